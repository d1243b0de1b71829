"""Feast-compatible feature serving.

- ``feature_routes(store)``: Starlette routes for ``POST /get-online-features``, ``/push``,
  ``/write-to-online-store``, ``/materialize``, ``/materialize-incremental`` and
  ``GET /health``, with Feast's request JSON and columnar response. Mount them into the
  model server's REST app (``ModelServer(extra_routes=...)``) to share one port.
- ``FeatureServiceModel`` / ``feature_service_models(store)``: each FeatureService served as
  a model over KServe v1, OIP REST and OIP gRPC (entity keys in, one typed tensor per
  feature out).
"""

from tureen.feature_server.routes import feature_routes
from tureen.feature_server.service_model import FeatureServiceModel, feature_service_models

__all__ = ["FeatureServiceModel", "feature_routes", "feature_service_models"]
