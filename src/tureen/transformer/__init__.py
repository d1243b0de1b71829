"""Feature-enriched inference: a configured transformer in front of any model.

- ``TransformerConfig`` / ``load_transformer_config(dict | path)``: the configuration.
- ``build_transformer(config, store=..., resolve_model=...)`` → ``FeatureTransformer``, a
  ``tureen.serving.Model`` served like any other (KServe v1, OIP REST, OIP gRPC).
"""

from tureen.transformer.config import TransformerConfig, load_transformer_config
from tureen.transformer.fused import FusedFeatureTransformer
from tureen.transformer.model import FeatureTransformer, build_transformer

__all__ = [
    "FeatureTransformer",
    "FusedFeatureTransformer",
    "TransformerConfig",
    "build_transformer",
    "load_transformer_config",
]
