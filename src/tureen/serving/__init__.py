"""Model serving: KServe-compatible ``Model`` API over KServe v1, OIP REST and OIP gRPC.

Public names:

- ``Model``: subclass it (load / preprocess / predict / postprocess, optional explain).
- ``ModelServer(http_port, grpc_port, workers, ...).start([models])``: serve them.
- ``DataPlane``: the transport-independent core every transport calls.
- ``InferRequest``, ``InferInput``, ``RequestedOutput``, ``InferResponse``, ``InferOutput``,
  ``TensorSpec``: the OIP request/response types (numpy tensors).
- ``ModelRepository``, ``VersionPolicy``: models on disk (``ROOT/<name>/<version>/``).
- ``tureen.serving.clients``: async clients for remote predictors (v1, v2, grpc-v2):
  ``predictor_client(host, protocol)``; ``tureen.serving.remote.RemoteModel`` forwards
  predict to one (KServe transformer shape: override preprocess/postprocess).
- The transports: ``tureen.transports.rest.build_app(dataplane, extra_routes=[...])`` (an ASGI
  app that also resolves its routes natively for ``tureen.transports.http1.HTTPServer``),
  ``tureen.transports.grpc.h2server.start_h2_server(dataplane, host, port, ...)`` (gRPC on
  tureen's HTTP/2) and ``tureen.transports.grpc.add_inference_service(server, dataplane)``
  (the same service on a ``grpc.aio`` server).
"""

from tureen.serving.dataplane import DataPlane
from tureen.serving.inference import (
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    RequestedOutput,
    TensorSpec,
)
from tureen.serving.model import Model
from tureen.serving.repository import ModelRepository
from tureen.serving.server import ModelServer
from tureen.serving.versions import VersionPolicy

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
    "TensorSpec",
    "VersionPolicy",
]
