"""``build_transformer``: the fused transformer when everything is in process and sync, else
the general one."""

from __future__ import annotations

import ast
from pathlib import Path

from tureen.store import FeatureStore
from tureen.transformer.config import TransformerConfig
from tureen.transformer.fused import FusedFeatureTransformer
from tureen.transformer.model import FeatureTransformer, ModelResolver


def build_transformer(
    config: TransformerConfig, *, store: FeatureStore | None = None,
    resolve_model: ModelResolver | None = None,
) -> FeatureTransformer:
    """The transformer for ``config`` (fused when everything is in process and sync)."""
    fused = (config.features.source == "local" and not config.predictor.host
             and not _script_is_async(config))
    cls = FusedFeatureTransformer if fused else FeatureTransformer
    return cls(config, store=store, resolve_model=resolve_model)


def _script_is_async(config: TransformerConfig) -> bool:
    if config.script is None:
        return False
    try:
        tree = ast.parse(Path(config.script.path).read_text())
    except (OSError, SyntaxError):
        return False
    return any(isinstance(n, ast.AsyncFunctionDef) for n in ast.walk(tree))
