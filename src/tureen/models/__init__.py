"""Model registry: versioned models with their lineage (framework, signature, metrics, the
feature service and registry version they were trained against, the training set).

- ``ModelRegistry.for_repo(repo)``: the models store of a feature repo.
- ``ModelStore(url)``: the versioned files on any fsspec filesystem.
- ``ModelVersion``: one version's metadata (``NAME/VERSION/tureen-model.json``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tureen.models.version import FRAMEWORKS, METADATA_FILE, ModelVersion, TensorSig

if TYPE_CHECKING:
    from tureen.models.registry import ModelRegistry, parse_model_ref
    from tureen.models.store import ModelStore

_LAZY = {"ModelRegistry": "tureen.models.registry", "parse_model_ref": "tureen.models.registry",
         "ModelStore": "tureen.models.store"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tureen.models' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "FRAMEWORKS",
    "METADATA_FILE",
    "ModelRegistry",
    "ModelStore",
    "ModelVersion",
    "TensorSig",
    "parse_model_ref",
]
