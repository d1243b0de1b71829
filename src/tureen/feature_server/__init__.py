"""Feast-compatible feature serving.

- ``feast_json``: Feast's request JSON and columnar response, transport-free. The HTTP routes
  (``POST /get-online-features``, ``/push``, ``/write-to-online-store``, ``/materialize``,
  ``/materialize-incremental``, ``GET /health``) live with the other transports in
  ``tureen.transports.rest.feast.feature_routes(store)``; mount them into the model server's
  REST app (``ModelServer(extra_routes=...)``) to share one port.
- ``FeatureServiceModel`` / ``feature_service_models(store)``: each FeatureService served as
  a model over KServe v1, OIP REST and OIP gRPC (entity keys in, one typed tensor per
  feature out).
"""

from tureen.feature_server.service_model import FeatureServiceModel, feature_service_models

__all__ = ["FeatureServiceModel", "feature_service_models"]
