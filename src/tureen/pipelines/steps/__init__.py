"""What tureen's pipeline components do, as plain functions (no ``kfp`` needed).

The components in ``tureen.pipelines.components`` are thin KFP wrappers around these: each
one imports its step inside the function body, so the compiled component is self-contained
and runs the same code in a local run and in the tureen image on Kubeflow.
"""
