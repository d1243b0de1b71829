"""Conversions between in-memory data (numpy, pandas) and wire tensors.

- ``tensor``: one OIP tensor ⇄ numpy array, JSON ``data`` and the binary tensor extension.
- ``table``: ``content_type="pd"`` inputs ⇄ pandas DataFrame.
- ``v1``: KServe v1 ``instances`` ⇄ arrays, predictions ⇄ JSON.
- ``oip_json``: OIP REST bodies (JSON plus the binary tensor extension) ⇄ ``InferRequest`` /
  ``InferResponse``, both directions (servers and the remote-predictor clients).
- ``oip_proto``: OIP protobuf messages (``pb.inference_pb2``) ⇄ the same types.
- ``typed``: online feature values ⇄ typed numpy columns (the registry dtype decides).

No web framework, no grpc: transports and clients call these.
"""

from tureen.codecs.tensor import (
    decode_binary,
    decode_json,
    element_count,
    encode_binary,
    encode_json,
)

__all__ = ["decode_binary", "decode_json", "element_count", "encode_binary", "encode_json"]
