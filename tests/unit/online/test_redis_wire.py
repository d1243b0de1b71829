"""RESP packing for one-round-trip Redis batches: the hand-packed forms equal the generic one
and what RESP specifies."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tureen.online.redis_wire import pack, pack_keyed, pack_rows


def test_pack_is_resp_arrays_of_bulk_strings() -> None:
    packed = pack([(b"HGET", b"k", b"f"), (b"PING",)])
    assert packed.count == 2
    assert packed.payload == b"*3\r\n$4\r\nHGET\r\n$1\r\nk\r\n$1\r\nf\r\n*1\r\n$4\r\nPING\r\n"
    assert pack([]).payload == b""


@given(st.lists(st.binary(max_size=40), max_size=30), st.binary(max_size=5),
       st.binary(max_size=5), st.lists(st.binary(max_size=10), max_size=3),
       st.booleans())
def test_pack_keyed_equals_pack(keys: list[bytes], pre: bytes, post: bytes,
                                tail: list[bytes], same_length: bool) -> None:
    if same_length:
        keys = [k.ljust(12, b"\r")[:12] for k in keys]  # CR bytes inside keys are data
    want = pack([(b"HMGET", pre + k + post, *tail) for k in keys])
    got = pack_keyed(b"HMGET", keys, (pre, post), tail)
    assert got == want


@given(st.lists(st.binary(min_size=8, max_size=8), max_size=30), st.binary(max_size=5),
       st.binary(max_size=5), st.lists(st.binary(max_size=10), max_size=3))
def test_pack_rows_equals_pack_keyed(keys: list[bytes], pre: bytes, post: bytes,
                                     tail: list[bytes]) -> None:
    """Keys as the rows of a uint8 array (integer keys, no bytes object per key) pack to
    the same payload as the keys themselves."""
    grid = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 8)
    assert pack_rows(b"HGET", grid, (pre, post), tail) == pack_keyed(b"HGET", keys, (pre, post),
                                                                      tail)
