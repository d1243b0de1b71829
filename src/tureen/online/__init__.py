"""Online: low-latency feature storage and retrieval.

- ``protocol``: the ``OnlineStore`` / ``AsyncOnlineStore`` seam every backend implements.
- ``keys``: canonical entity-key bytes, shared by all backends.
- ``encoding``: the bytes of one stored row (features + event/created time), shared too.
- ``sqlite_store``: the embedded default backend (``redis_store``: the scale-out one).
- ``vectors``: per-service vectors (one stored row per entity for a whole FeatureService).
- ``retrieval``: ``OnlineRetrieval.get_online_features[_async]`` over any backend.
- ``response``: ``OnlineResponse`` (dict, DataFrame, Arrow, numpy, Feast JSON).

Writes come from ``tureen.ingest`` (push, write_to_online_store) and
``tureen.materialize``.
"""
