"""Model serving: KServe-compatible ``Model`` API over KServe v1, OIP REST and OIP gRPC.

Public names:

- ``Model``: subclass it (load / preprocess / predict / postprocess, optional explain).
- ``ModelServer(http_port, grpc_port, workers, ...).start([models])``: serve them; every
  option is a field of ``ServingConfig`` (``tureen.serving.settings``).
- ``DataPlane``: the transport-independent core every transport calls.
- ``InferRequest``, ``InferInput``, ``RequestedOutput``, ``InferResponse``, ``InferOutput``,
  ``TensorSpec``: the OIP request/response types (numpy tensors); ``UInt64``: an unsigned
  integer parameter.
- ``ModelRepository``, ``VersionPolicy``: models on disk (``ROOT/<name>/<version>/``).
- ``tureen.serving.clients``: async clients for remote predictors (v1, v2, grpc-v2):
  ``predictor_client(host, protocol)``; ``tureen.serving.remote.RemoteModel`` forwards
  predict to one (KServe transformer shape: override preprocess/postprocess).
- ``tureen.serving.guard`` / ``tureen.serving.context``: the guard chain and request context
  every transport runs requests through.

Names are imported on first use, so ``tureen.serving.context`` and the other light modules
can be imported by any service without loading the servers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tureen.serving.dataplane import DataPlane
    from tureen.serving.inference import (
        InferInput,
        InferOutput,
        InferRequest,
        InferResponse,
        RequestedOutput,
        TensorSpec,
        UInt64,
    )
    from tureen.serving.model import Model
    from tureen.serving.repository import ModelRepository
    from tureen.serving.server import ModelServer
    from tureen.serving.settings import ServingConfig
    from tureen.serving.versions import VersionPolicy

_WHERE = {
    "DataPlane": "dataplane",
    "InferInput": "inference",
    "InferOutput": "inference",
    "InferRequest": "inference",
    "InferResponse": "inference",
    "RequestedOutput": "inference",
    "TensorSpec": "inference",
    "UInt64": "inference",
    "Model": "model",
    "ModelRepository": "repository",
    "ModelServer": "server",
    "ServingConfig": "settings",
    "VersionPolicy": "versions",
}

__all__ = [
    "DataPlane",
    "InferInput",
    "InferOutput",
    "InferRequest",
    "InferResponse",
    "Model",
    "ModelRepository",
    "ModelServer",
    "RequestedOutput",
    "ServingConfig",
    "TensorSpec",
    "UInt64",
    "VersionPolicy",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'tureen.serving' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tureen.serving.{module}"), name)
    globals()[name] = value
    return value
