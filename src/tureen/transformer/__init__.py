"""Feature-enriched inference: a configured transformer in front of any model.

- ``TransformerConfig`` / ``load_transformer_config(dict | path)``: the configuration.
- ``build_transformer(config, store=..., resolve_model=...)`` → ``FeatureTransformer``, a
  ``tureen.serving.Model`` served like any other (KServe v1, OIP REST, OIP gRPC).

The serving classes are imported on first use, so reading a configuration (``tureen.yaml``
checks its transformers when it loads) does not import the serving stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tureen.transformer.config import TransformerConfig, load_transformer_config

if TYPE_CHECKING:
    from tureen.transformer.build import build_transformer
    from tureen.transformer.fused import FusedFeatureTransformer
    from tureen.transformer.model import FeatureTransformer

_LAZY = {
    "FusedFeatureTransformer": "tureen.transformer.fused",
    "FeatureTransformer": "tureen.transformer.model",
    "build_transformer": "tureen.transformer.build",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tureen.transformer' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "FeatureTransformer",
    "FusedFeatureTransformer",
    "TransformerConfig",
    "build_transformer",
    "load_transformer_config",
]
