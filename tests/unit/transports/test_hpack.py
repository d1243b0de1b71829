"""HPACK (RFC 7541): the Appendix C examples, Huffman, integers, errors, the block cache."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tureen.transports.grpc import huffman
from tureen.transports.grpc.hpack import (
    Decoder,
    Encoder,
    HpackError,
    decode_int,
    encode_int,
)


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


def table(d: Decoder) -> list[tuple[str, str]]:
    return [(n, v) for n, v, _ in d.table]


# C.2: one block each, a fresh decoder each
@pytest.mark.parametrize(("block", "header", "indexed"), [
    ("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
     ("custom-key", "custom-header"), True),
    ("040c 2f73 616d 706c 652f 7061 7468", (":path", "/sample/path"), False),
    ("1008 7061 7373 776f 7264 0673 6563 7265 74", ("password", "secret"), False),
    ("82", (":method", "GET"), False),
])
def test_c2_single_representations(block: str, header: tuple[str, str], indexed: bool) -> None:
    d = Decoder()
    assert d.decode(h(block)) == (header,)
    assert table(d) == ([header] if indexed else [])
    assert d.size == (55 if indexed else 0)


REQUESTS = [
    [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")],
    [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com"),
     ("cache-control", "no-cache")],
    [(":method", "GET"), (":scheme", "https"), (":path", "/index.html"),
     (":authority", "www.example.com"), ("custom-key", "custom-value")],
]
REQUEST_TABLES = [
    ([(":authority", "www.example.com")], 57),
    ([("cache-control", "no-cache"), (":authority", "www.example.com")], 110),
    ([("custom-key", "custom-value"), ("cache-control", "no-cache"),
      (":authority", "www.example.com")], 164),
]
C3 = ["8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
      "8286 84be 5808 6e6f 2d63 6163 6865",
      "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65"]
C4 = ["8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
      "8286 84be 5886 a8eb 1064 9cbf",
      "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"]

COOKIE = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
D1, D2 = "Mon, 21 Oct 2013 20:13:21 GMT", "Mon, 21 Oct 2013 20:13:22 GMT"
LOC = "https://www.example.com"
RESPONSES = [
    [(":status", "302"), ("cache-control", "private"), ("date", D1), ("location", LOC)],
    [(":status", "307"), ("cache-control", "private"), ("date", D1), ("location", LOC)],
    [(":status", "200"), ("cache-control", "private"), ("date", D2), ("location", LOC),
     ("content-encoding", "gzip"), ("set-cookie", COOKIE)],
]
RESPONSE_TABLES = [
    ([("location", LOC), ("date", D1), ("cache-control", "private"), (":status", "302")], 222),
    ([(":status", "307"), ("location", LOC), ("date", D1), ("cache-control", "private")], 222),
    ([("set-cookie", COOKIE), ("content-encoding", "gzip"), ("date", D2)], 215),
]
C5 = ["4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 "
      "303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
      "4803 3330 37c1 c0bf",
      "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 "
      "677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 "
      "553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31"]
C6 = ["4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e "
      "919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
      "4883 640e ffc1 c0bf",
      "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 "
      "821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed "
      "4ee5 b106 3d50 07"]


@pytest.mark.parametrize(("blocks", "size", "want", "tables"), [
    (C3, 4096, REQUESTS, REQUEST_TABLES), (C4, 4096, REQUESTS, REQUEST_TABLES),
    (C5, 256, RESPONSES, RESPONSE_TABLES), (C6, 256, RESPONSES, RESPONSE_TABLES),
], ids=["C.3", "C.4-huffman", "C.5-eviction", "C.6-huffman-eviction"])
def test_appendix_c_sequences(blocks: list[str], size: int, want: list[list[tuple[str, str]]],
                              tables: list[tuple[list[tuple[str, str]], int]]) -> None:
    d = Decoder(size)
    for block, headers, (entries, table_size) in zip(blocks, want, tables, strict=True):
        assert list(d.decode(h(block))) == headers
        assert table(d) == entries
        assert d.size == table_size


def test_huffman_codes_match_appendix_b() -> None:
    # a few rows of Appendix B, as (symbol, code, bits)
    for sym, code, bits in [(0, 0x1FF8, 13), (10, 0x3FFFFFFC, 30), (ord("a"), 0x3, 5),
                            (ord(" "), 0x14, 6), (203, 0x7FFFFDE, 27), (241, 0x7FFFFE6, 27),
                            (255, 0x3FFFFEE, 26), (256, 0x3FFFFFFF, 30)]:
        assert (huffman.CODES[sym], huffman.LENGTHS[sym]) == (code, bits)
    assert huffman.encode(b"www.example.com") == h("f1e3 c2e5 f23a 6ba0 ab90 f4ff")


@given(st.binary(max_size=64))
def test_huffman_round_trip(data: bytes) -> None:
    assert huffman.decode(huffman.encode(data)) == data


@pytest.mark.parametrize("bad", [
    "ff ff ff ff",  # a whole EOS code (30 ones) inside the string
    "00",  # 5 bits '0' then 3 bits of zero padding: padding must be ones
    "1f ff",  # 'a' then 11 bits of ones: padding longer than 7 bits
])
def test_huffman_rejects_eos_and_bad_padding(bad: str) -> None:
    with pytest.raises(huffman.HuffmanError):
        huffman.decode(h(bad))


@given(st.integers(min_value=0, max_value=2**28), st.integers(min_value=1, max_value=8))
def test_integer_round_trip(value: int, prefix: int) -> None:
    data = encode_int(value, prefix)
    assert decode_int(data, 0, prefix) == (value, len(data))


def test_integer_examples_c1() -> None:
    assert encode_int(10, 5) == bytes([0b01010])
    assert encode_int(1337, 5) == bytes([0b11111, 0b10011010, 0b00001010])
    assert encode_int(42, 8) == bytes([42])
    with pytest.raises(HpackError, match="inside an integer"):
        decode_int(b"\x1f\x9a", 0, 5)
    with pytest.raises(HpackError, match="longer"):
        decode_int(b"\x1f\xff\xff\xff\xff\xff\x01", 0, 5)


def test_size_updates_and_errors() -> None:
    d = Decoder(4096)
    d.decode(h(C3[0]))
    assert d.size == 57
    d.decode(b"\x20")  # size update to 0 empties the table
    assert d.size == 0 and not d.table
    with pytest.raises(HpackError, match="outside"):
        d.decode(b"\xbe")
    with pytest.raises(HpackError, match="exceeds"):
        d.decode(encode_int(8192, 5, 0x20))
    with pytest.raises(HpackError, match="after a header field"):
        d.decode(b"\x82\x20")
    with pytest.raises(HpackError, match="outside"):
        d.decode(b"\x80")  # index 0
    with pytest.raises(HpackError, match="inside a string"):
        d.decode(b"\x04\x05ab")


def test_entry_larger_than_table_empties_it() -> None:
    d = Decoder(64)
    d.decode(h(C3[0]))
    assert d.size == 57
    d.decode(b"\x40\x01a" + encode_int(40, 7) + b"x" * 40)  # 1 + 40 + 32 > 64
    assert d.size == 0 and not d.table


def test_indexed_only_blocks_are_cached_until_the_table_changes() -> None:
    d = Decoder()
    d.decode(h(C3[0]))
    first = d.decode(b"\x82\xbe")
    assert first == ((":method", "GET"), (":authority", "www.example.com"))
    assert d.decode(b"\x82\xbe") is first  # served from the cache
    d.decode(b"\x40\x01k\x01v")  # insertion: index 62 is now k: v
    assert d.decode(b"\x82\xbe") == ((":method", "GET"), ("k", "v"))


def test_literals_without_indexing_are_cached_but_never_indexed_ones_are_not() -> None:
    d = Decoder()
    plain = b"\x82" + b"\x04" + encode_int(len("/x/Infer"), 7) + b"/x/Infer"  # :path literal
    first = d.decode(plain)
    assert first == ((":method", "GET"), (":path", "/x/Infer"))
    assert d.decode(plain) is first  # the table did not change: served from the cache
    secret = b"\x82" + b"\x1f\x08" + encode_int(3, 7) + b"tok"  # never-indexed authorization
    one = d.decode(secret)
    assert one == ((":method", "GET"), ("authorization", "tok"))
    assert d.decode(secret) is not one  # sensitive fields are decoded anew, not kept
    d.decode(b"\x40\x01k\x01v")  # an insertion clears the cache
    assert d.decode(plain) is not first and d.decode(plain) == first


def test_encoder_output_decodes() -> None:
    e = Encoder()
    headers = [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "0"),
               ("grpc-message", "x" * 300), ("x-request-id", "abc")]
    block = e.encode(headers)
    assert block[0] == 0x88  # :status 200 is static index 8
    assert list(Decoder().decode(block)) == headers
    e.set_max_table_size(0)
    block = e.encode(headers[:1])
    assert block == b"\x20\x88"
    d = Decoder()
    assert list(d.decode(block)) == headers[:1] and d.max_size == 0
    assert e.encode(headers[:1]) == b"\x88"  # owed once


def test_decoded_size_is_enforced_while_decoding_and_the_table_stays_in_sync() -> None:
    """Issue 11 #6: 1-byte references must not build a million-field list; the block is
    still decoded to the end (its insertions reach the table) and then refused."""
    from tureen.transports.grpc.hpack import HeaderListTooLarge

    d = Decoder()
    bomb = b"\x82" * 100_000 + b"\x40\x01k\x01v"  # then an insertion at the very end
    with pytest.raises(HeaderListTooLarge):
        d.decode(bomb, max_list_size=8192)
    assert d.table[0][:2] == ("k", "v")  # in sync with the peer's encoder
    assert d.decode(b"\xbe") == (("k", "v"),)


def test_the_cache_is_bounded_in_bytes() -> None:
    from tureen.transports.grpc import hpack

    d = Decoder()
    for i in range(2000):
        value = f"{i:05d}" + "x" * 1000
        d.decode(b"\x04" + encode_int(len(value), 7) + value.encode())  # :path literal
        assert d._cache_bytes <= hpack.CACHE_BYTES
    big = b"\x04" + encode_int(5000, 7) + b"y" * 5000
    d.decode(big)
    assert big not in d._cache  # larger than CACHE_BLOCK: never kept


def _secret_block(token: bytes, path: bytes = b"/x/Infer", huff: bool = True) -> bytes:
    """:method POST, a :path literal, a never-indexed authorization, content-length 5."""
    value = huffman.encode(token) if huff else token
    return (b"\x83" + b"\x04" + encode_int(len(path), 7) + path
            + b"\x1f\x08" + encode_int(len(value), 7, 0x80 if huff else 0) + value
            + b"\x0f\x0d\x015")


def test_never_indexed_blocks_are_kept_as_shapes_without_their_values() -> None:
    d = Decoder()
    one = d.decode(_secret_block(b"Bearer tok-one"))
    assert one[2] == ("authorization", "Bearer tok-one")
    again = d.decode(_secret_block(b"Bearer tok-one"))
    assert again == one and again is not one  # decoded anew
    other = d.decode(_secret_block(b"Bearer a-longer-token-two", huff=False))
    assert other == ((":method", "POST"), (":path", "/x/Infer"),
                     ("authorization", "Bearer a-longer-token-two"), ("content-length", "5"))
    assert getattr(other, "shape", None) is getattr(one, "shape", None) is not None
    kept = repr(d._shapes) + repr(d._cache)
    assert "tok-one" not in kept and "token-two" not in kept  # no value is kept
    assert huffman.encode(b"Bearer tok-one") not in b"".join(d._shapes[0].segments)
    # another :path is another block: decoded in full, right
    assert d.decode(_secret_block(b"Bearer t", b"/y"))[1:3] == (
        (":path", "/y"), ("authorization", "Bearer t"))
    with pytest.raises(HpackError):  # a bad value in the shape's hole is still refused
        d.decode(_secret_block(b"")[:-5] + b"\x81\xff" + b"\x0f\x0d\x015")  # 8 bits of padding
    from tureen.transports.grpc.hpack import HeaderListTooLarge

    with pytest.raises(HeaderListTooLarge):  # the limit counts the value
        d.decode(_secret_block(b"Bearer " + b"x" * 500), max_list_size=300)
    assert len(d.decode(_secret_block(b"Bearer tok-one"), max_list_size=300)) == 4
    d.decode(b"\x40\x01k\x01v")  # an insertion forgets the shapes
    assert not d._shapes


@given(st.lists(st.tuples(st.binary(max_size=40), st.sampled_from([b"/a", b"/b", b"/ab"]),
                          st.booleans()), min_size=1, max_size=12))
def test_shaped_decoding_matches_a_fresh_decoder(blocks: list[tuple[bytes, bytes, bool]]) -> None:
    d = Decoder()
    for token, path, huff in blocks:
        block = _secret_block(token, path, huff)
        try:
            want: object = Decoder().decode(block)
        except HpackError as exc:
            want = type(exc)
        try:
            got: object = d.decode(block)
        except HpackError as exc:
            got = type(exc)
        assert got == want


def test_a_vouched_value_is_not_decoded_again_and_others_still_are() -> None:
    from tureen.transports.grpc import hpack

    d = Decoder()
    first = d.decode(_secret_block(b"Bearer good"))
    assert not d._vouched  # nothing is kept unless vouched for
    d.vouch(first, "authorization")
    again = d.decode(_secret_block(b"Bearer good"))
    assert again[2][1] is first[2][1]  # the vouched string itself
    assert d.decode(_secret_block(b"Bearer other"))[2] == ("authorization", "Bearer other")
    assert len(d._vouched) == 1
    d.vouch(again, "te")  # another name: nothing kept
    assert len(d._vouched) == 1
    d.vouch((("authorization", "x"),), "authorization")  # not a shaped list: ignored
    for i in range(hpack.MAX_VOUCHED + 1):
        d.vouch(d.decode(_secret_block(b"Bearer t%d" % i)), "authorization")
        assert len(d._vouched) <= hpack.MAX_VOUCHED
    d.decode(b"\x40\x01k\x01v")  # a table change does not concern the literals
    assert d.decode(_secret_block(b"Bearer t4"))[2] == ("authorization", "Bearer t4")


def test_a_block_whose_values_are_all_vouched_is_cached_and_forgotten_with_them() -> None:
    from tureen.transports.grpc import hpack

    d = Decoder()
    first = d.decode(_secret_block(b"Bearer good"))
    d.vouch(first, "authorization")
    again = d.decode(_secret_block(b"Bearer good"))  # through the shape, value vouched
    assert again == first and type(again) is tuple  # a plain list: nothing fresh in it
    assert d.decode(_secret_block(b"Bearer good")) is again  # the cache: no decoding
    other = d.decode(_secret_block(b"Bearer other"))  # not vouched: decoded, not kept
    assert other[2] == ("authorization", "Bearer other")
    assert d.decode(_secret_block(b"Bearer other")) is not other
    assert "other" not in repr(d._cache)
    with pytest.raises(hpack.HeaderListTooLarge):  # the limit still holds on the way in
        Decoder().decode(_secret_block(b"Bearer good"), max_list_size=60)
    for i in range(hpack.MAX_VOUCHED):  # vouching more than it keeps forgets the others
        d.vouch(d.decode(_secret_block(b"Bearer t%d" % i)), "authorization")
    assert "good" not in repr(d._cache) + repr(d._vouched)
    assert d.decode(_secret_block(b"Bearer good")) is not again
    d.decode(b"\x40\x01k\x01v")  # a table change empties the cache
    assert all("t3" not in repr(v) for v in d._cache.values())
