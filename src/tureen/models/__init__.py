"""Model registry: versioned models with their lineage (framework, signature, metrics, the
feature service and registry version they were trained against, the training set).

- ``ModelRegistry.for_repo(repo)``: the models store of a feature repo.
- ``ModelStore(url)``: the versioned files on any fsspec filesystem.
- ``ModelVersion``: one version's metadata (``NAME/VERSION/tureen-model.json``).
"""

from tureen.models.registry import ModelRegistry, parse_model_ref
from tureen.models.store import ModelStore
from tureen.models.version import FRAMEWORKS, METADATA_FILE, ModelVersion, TensorSig

__all__ = [
    "FRAMEWORKS",
    "METADATA_FILE",
    "ModelRegistry",
    "ModelStore",
    "ModelVersion",
    "TensorSig",
    "parse_model_ref",
]
