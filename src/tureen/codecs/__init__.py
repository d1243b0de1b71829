"""Conversions between in-memory data (numpy, pandas) and wire tensors.

- ``tensor``: one OIP tensor ⇄ numpy array, JSON ``data`` and the binary tensor extension.
- ``table``: ``content_type="pd"`` inputs ⇄ pandas DataFrame.
- ``v1``: KServe v1 ``instances`` ⇄ arrays, predictions ⇄ JSON.

No web framework, no grpc: transports call these.
"""

from tureen.codecs.tensor import (
    decode_binary,
    decode_json,
    element_count,
    encode_binary,
    encode_json,
)

__all__ = ["decode_binary", "decode_json", "element_count", "encode_binary", "encode_json"]
