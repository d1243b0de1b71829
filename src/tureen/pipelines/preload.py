"""Imported by the fork server (``forkserver``) before it forks task processes: what every
task needs, loaded once — kfp's DSL without its API client, the worker, tureen's steps."""

from tureen.pipelines import worker  # noqa: F401
from tureen.pipelines.loader import import_kfp, kfp_available

if kfp_available():
    import_kfp()
    import tureen.pipelines.steps.evaluate
    import tureen.pipelines.steps.gate
    import tureen.pipelines.steps.train
    import tureen.pipelines.steps.training_set  # noqa: F401
