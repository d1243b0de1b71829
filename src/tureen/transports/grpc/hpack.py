"""HPACK header compression for HTTP/2 (RFC 7541).

``Decoder`` implements every representation: indexed fields, literals with and without
indexing and never indexed, dynamic table size updates, the static and dynamic tables with
eviction, and Huffman-coded strings. A header block that does not change the dynamic table
(indexed fields and literals without indexing) decodes the same way for as long as the
table is unchanged, so such blocks are cached by their bytes: clients send byte-identical
blocks for every call after the first (grpcio indexes everything; nghttp2 sends ``:path``
and ``content-length`` as literals without indexing). Any change to the table clears the
cache; blocks with never-indexed (sensitive) fields are not kept; the cache is bounded in
bytes (``CACHE_BYTES``), not entries, and a block larger than ``CACHE_BLOCK`` is never kept.

A block with never-indexed fields (nghttp2 sends ``authorization`` so) is kept as a ``Shape``
instead: its bytes with the never-indexed values cut out, and its decoded list with those
values blank. A later block that is the same bytes around values of its own decodes as the
shape's list with its own values, decoded anew (``Shaped``, whose ``shape`` lets a caller
reuse what it derived from the rest of the list); no sensitive value is kept — unless the
application vouches for it (``vouch``: a credential that authenticated): then the same literal
on this connection is not decoded again, and a block whose never-indexed values are all
vouched for is cached by its bytes like any other (the next identical block is one dict
lookup, and returns the same tuple). A peer of the connection learns nothing from that (the
value is one the server accepted, as its answer tells), and the authenticator already keeps
the credentials it verified. The cache only spares decoding: the application still checks
the credential of every request (a revoked token is refused as before).

``decode(block, max_list_size)`` enforces the decoded size while decoding (RFC 9113 §6.5.2:
each field counts name + value + 32): past the limit it keeps decoding only what keeps the
dynamic table in sync, allocates nothing more, and raises ``HeaderListTooLarge`` at the end,
so the connection stays usable and the stream can be refused on its own.

``Encoder`` uses only static-table indexes and literals without indexing, never Huffman:
valid HPACK that needs no dynamic table state on the peer's side.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from tureen.transports.grpc import huffman

Header = tuple[str, str]

STATIC_TABLE: tuple[Header, ...] = (
    (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"),
    (":path", "/index.html"), (":scheme", "http"), (":scheme", "https"), (":status", "200"),
    (":status", "204"), (":status", "206"), (":status", "304"), (":status", "400"),
    (":status", "404"), (":status", "500"), ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""),
    ("accept", ""), ("access-control-allow-origin", ""), ("age", ""), ("allow", ""),
    ("authorization", ""), ("cache-control", ""), ("content-disposition", ""),
    ("content-encoding", ""), ("content-language", ""), ("content-length", ""),
    ("content-location", ""), ("content-range", ""), ("content-type", ""), ("cookie", ""),
    ("date", ""), ("etag", ""), ("expect", ""), ("expires", ""), ("from", ""), ("host", ""),
    ("if-match", ""), ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""),
    ("if-unmodified-since", ""), ("last-modified", ""), ("link", ""), ("location", ""),
    ("max-forwards", ""), ("proxy-authenticate", ""), ("proxy-authorization", ""),
    ("range", ""), ("referer", ""), ("refresh", ""), ("retry-after", ""), ("server", ""),
    ("set-cookie", ""), ("strict-transport-security", ""), ("transfer-encoding", ""),
    ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", ""),
)
_STATIC_LEN = len(STATIC_TABLE)
ENTRY_OVERHEAD = 32
CACHE_BYTES = 64 * 1024
CACHE_BLOCK = 4096
#: shapes of blocks with never-indexed fields kept per decoder (most recent first)
MAX_SHAPES = 8
#: never-indexed values vouched for, kept per decoder
MAX_VOUCHED = 4


class HpackError(ValueError):
    """A header block that cannot be decoded (an HTTP/2 COMPRESSION_ERROR)."""


class HeaderListTooLarge(Exception):  # noqa: N818 - a condition, not a coding error
    """The decoded header list is over the limit; the block was still fully decoded (the
    dynamic table is in sync), so only the stream is refused."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"header list of at least {size} bytes is over the limit of {limit}")
        self.size = size
        self.limit = limit


def decode_int(data: bytes | bytearray | memoryview, pos: int, prefix: int) -> tuple[int, int]:
    """The integer at ``data[pos]`` with an N-bit prefix (§5.1) and the position after it."""
    mask = (1 << prefix) - 1
    try:
        value = data[pos] & mask
        pos += 1
        if value < mask:
            return value, pos
        shift = 0
        while True:
            b = data[pos]
            pos += 1
            value += (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value, pos
            if shift > 28:
                raise HpackError("HPACK integer is longer than 4 continuation bytes")
    except IndexError:
        raise HpackError("header block ends inside an integer") from None


def encode_int(value: int, prefix: int, first: int = 0) -> bytes:
    """``value`` with an N-bit prefix; ``first`` holds the pattern bits above the prefix."""
    mask = (1 << prefix) - 1
    if value < mask:
        return bytes((first | value,))
    out = bytearray((first | mask,))
    value -= mask
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_str(value: str) -> bytes:
    raw = value.encode("latin-1")
    return encode_int(len(raw), 7) + raw


@dataclass(frozen=True, eq=False)
class Shape:
    """A decoded block with never-indexed values cut out: ``segments`` are the bytes around
    the values' string literals; ``holes`` where each value goes in ``headers`` (which has
    ``(name, "")`` there); ``size`` the decoded size without the values."""

    segments: tuple[bytes, ...]
    holes: tuple[tuple[int, str], ...]
    headers: tuple[Header, ...]
    size: int


class Shaped(tuple[Header, ...]):
    """A header list decoded through ``shape`` (the same object for every block of it);
    ``fresh``: (position in ``shape.holes``, string literal as sent) of each value decoded
    anew (not one vouched for)."""

    shape: Shape
    fresh: tuple[tuple[int, bytes], ...]


class Decoder:
    def __init__(self, max_table_size: int = 4096) -> None:
        #: the most the peer may set the table to (our SETTINGS_HEADER_TABLE_SIZE)
        self.max_allowed = max_table_size
        self.max_size = max_table_size
        self.size = 0
        self.table: deque[tuple[str, str, int]] = deque()
        self._cache: dict[bytes, tuple[Header, ...]] = {}
        self._cache_bytes = 0
        self._shapes: list[Shape] = []
        self._vouched: dict[bytes, str] = {}

    def _clear_cache(self) -> None:
        self._cache.clear()
        self._cache_bytes = 0
        self._shapes.clear()

    def _add(self, name: str, value: str) -> None:
        size = len(name) + len(value) + ENTRY_OVERHEAD
        self._clear_cache()
        if size > self.max_size:  # §4.4: an entry larger than the table empties it
            self.table.clear()
            self.size = 0
            return
        while self.size + size > self.max_size:
            self.size -= self.table.pop()[2]
        self.table.appendleft((name, value, size))
        self.size += size

    def _resize(self, new: int) -> None:
        if new > self.max_allowed:
            raise HpackError(f"dynamic table size update to {new} exceeds the limit "
                             f"{self.max_allowed}")
        self._clear_cache()
        self.max_size = new
        while self.size > new:
            self.size -= self.table.pop()[2]

    def _get(self, index: int) -> Header:
        if 0 < index <= _STATIC_LEN:
            return STATIC_TABLE[index - 1]
        i = index - _STATIC_LEN - 1
        if index == 0 or i >= len(self.table):
            raise HpackError(f"header index {index} is outside the static and dynamic tables "
                             f"({_STATIC_LEN + len(self.table)} entries)")
        name, value, _ = self.table[i]
        return name, value

    def _skip(self, data: bytes, pos: int) -> int:
        """The position after the string literal at ``pos``, without decoding it."""
        length, pos = decode_int(data, pos, 7)
        end = pos + length
        if end > len(data):
            raise HpackError("header block ends inside a string literal")
        return end

    def _string(self, data: bytes, pos: int) -> tuple[str, int]:
        huff = data[pos] & 0x80 if pos < len(data) else 0
        length, pos = decode_int(data, pos, 7)
        end = pos + length
        if end > len(data):
            raise HpackError("header block ends inside a string literal")
        raw = data[pos:end]
        if huff:
            try:
                raw = huffman.decode(raw)
            except huffman.HuffmanError as exc:
                raise HpackError(str(exc)) from None
        return raw.decode("latin-1"), end

    def decode(self, block: bytes, max_list_size: int | None = None) -> tuple[Header, ...]:
        """The headers of one complete header block, in order (do not mutate the result).
        Raises ``HeaderListTooLarge`` (after decoding all of it) past ``max_list_size``."""
        hit = self._cache.get(block)
        if hit is not None:
            return hit
        if self._shapes:
            shaped = self._from_shape(block, max_list_size)
            if shaped is not None:
                return shaped
        holes: list[tuple[int, str, int, int]] = []  # never-indexed: index, name, value span
        out: list[Header] = []
        pos, n = 0, len(block)
        cacheable = True
        changes = 0
        size = 0
        limit = max_list_size if max_list_size is not None else -1
        over = False
        while pos < n:
            b = block[pos]
            if b & 0x80:  # §6.1 indexed field
                index, pos = decode_int(block, pos, 7)
                field = self._get(index)
                if not over:
                    size += len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
                    if limit >= 0 and size > limit:
                        over = True
                        out.clear()
                    else:
                        out.append(field)
                continue
            if b & 0xE0 == 0x20:  # §6.3 dynamic table size update
                if out or size:
                    raise HpackError("dynamic table size update after a header field")
                new, pos = decode_int(block, pos, 5)
                self._resize(new)
                changes += 1
                continue
            indexing = b & 0x40  # §6.2.1 incremental indexing, else §6.2.2/§6.2.3
            sensitive = b & 0xF0 == 0x10  # §6.2.3 never indexed: not kept in the cache
            if sensitive:
                cacheable = False
            index, pos = decode_int(block, pos, 6 if indexing else 4)
            if over and not indexing:  # nothing to keep: step over the strings
                if not index:
                    pos = self._skip(block, pos)
                pos = self._skip(block, pos)
                continue
            if index:
                name = self._get(index)[0]
            else:
                name, pos = self._string(block, pos)
            start = pos
            value, pos = self._sensitive(block, pos) if sensitive else self._string(block, pos)
            if sensitive and not over:
                holes.append((len(out), name, start, pos))
            if indexing:
                self._add(name, value)
                changes += 1
            if not over:
                size += len(name) + len(value) + ENTRY_OVERHEAD
                if limit >= 0 and size > limit:
                    over = True
                    out.clear()
                else:
                    out.append((name, value))
        if over:
            raise HeaderListTooLarge(size, limit)
        if holes and not changes and len(block) <= CACHE_BLOCK:
            return self._shaped(block, out, holes, size)
        result = tuple(out)
        if cacheable and not changes and len(block) <= CACHE_BLOCK:
            return self._keep(block, result, size)
        return result

    def _keep(self, block: bytes, result: tuple[Header, ...], size: int) -> tuple[Header, ...]:
        """``result`` (the decoded ``block``, which changed no table state) cached."""
        cost = 2 * len(block) + size
        if self._cache_bytes + cost > CACHE_BYTES:
            self._clear_cache()
        self._cache[bytes(block)] = result
        self._cache_bytes += cost
        return result

    def _shaped(self, block: bytes, out: list[Header], holes: list[tuple[int, str, int, int]],
                size: int) -> Shaped:
        """``out`` as a ``Shaped`` list, its shape kept for the next blocks like it."""
        segments, prev, blank = [], 0, list(out)
        for i, name, start, end in holes:
            segments.append(bytes(block[prev:start]))
            prev = end
            blank[i] = (name, "")
            size -= len(out[i][1])
        segments.append(bytes(block[prev:]))
        fresh = tuple((k, bytes(block[start:end])) for k, (_, _, start, end) in enumerate(holes))
        shape = Shape(tuple(segments), tuple((i, name) for i, name, _, _ in holes),
                      tuple(blank), size)
        del self._shapes[MAX_SHAPES - 1:]
        self._shapes.insert(0, shape)
        result = Shaped(out)
        result.shape, result.fresh = shape, fresh
        return result

    def _sensitive(self, block: bytes, pos: int) -> tuple[str, int]:
        """The never-indexed string literal at ``pos``: decoded anew unless vouched for."""
        if self._vouched:
            length, start = decode_int(block, pos, 7)
            hit = self._vouched.get(block[pos:start + length])
            if hit is not None:
                return hit, start + length
        return self._string(block, pos)

    def vouch(self, headers: tuple[Header, ...], name: str) -> None:
        """Keep the never-indexed ``name`` value of ``headers`` (a list this decoder
        returned), so that the same literal is not decoded again on this connection. Only
        for a value the application verified (a credential that authenticated)."""
        if not isinstance(headers, Shaped):
            return
        holes = headers.shape.holes
        for k, literal in headers.fresh:
            i, hole = holes[k]
            if hole == name and literal not in self._vouched:
                if len(self._vouched) >= MAX_VOUCHED:
                    self._vouched.clear()
                    self._clear_cache()  # and the blocks cached for holding them
                self._vouched[literal] = headers[i][1]

    def _from_shape(self, block: bytes, max_list_size: int | None) -> tuple[Header, ...] | None:
        """``block`` decoded through a kept shape it matches (its values decoded anew unless
        vouched for; a plain tuple, cached, when every one was), or None: no shape matches,
        or the block is for the full decode to refuse."""
        vouched = self._vouched
        for shape in self._shapes:
            segments = shape.segments
            if not block.startswith(segments[0]):
                continue
            pos, size, out, fresh = len(segments[0]), shape.size, list(shape.headers), []
            for k, (i, name) in enumerate(shape.holes):
                start = pos
                try:
                    length, pos = decode_int(block, pos, 7)
                    pos += length
                    literal = block[start:pos]
                    value = vouched.get(literal) if vouched else None
                    if value is None:
                        value = self._string(block, start)[0]
                        fresh.append((k, literal))
                except HpackError:
                    return None
                seg = segments[k + 1]
                if not block.startswith(seg, pos):
                    break
                out[i] = (name, value)
                size += len(value)
                pos += len(seg)
            else:
                if pos != len(block):
                    continue
                if max_list_size is not None and size > max_list_size:
                    return None
                if not fresh and len(block) <= CACHE_BLOCK:  # all vouched for: cacheable
                    return self._keep(block, tuple(out), size)
                result = Shaped(out)
                result.shape, result.fresh = shape, tuple(fresh)
                return result
        return None


_STATIC_FULL = {h: i + 1 for i, h in reversed(list(enumerate(STATIC_TABLE)))}
_STATIC_NAME = {h[0]: i + 1 for i, h in reversed(list(enumerate(STATIC_TABLE)))}


class Encoder:
    """Static indexes and literals without indexing only; no Huffman."""

    def __init__(self) -> None:
        self._pending_size: int | None = None

    def set_max_table_size(self, size: int) -> None:
        """The peer's SETTINGS_HEADER_TABLE_SIZE: announce it in the next block (§4.2).
        We never insert, so any value at most the setting is valid; use the setting."""
        self._pending_size = size

    def prefix(self) -> bytes:
        """The size update owed at the start of the next header block, if any."""
        if self._pending_size is None:
            return b""
        size, self._pending_size = self._pending_size, None
        return encode_int(size, 5, 0x20)

    def encode(self, headers: Iterable[Header]) -> bytes:
        out = bytearray(self.prefix())
        for name, value in headers:
            out += encode_field(name, value)
        return bytes(out)


def encode_field(name: str, value: str) -> bytes:
    full = _STATIC_FULL.get((name, value))
    if full is not None:
        return encode_int(full, 7, 0x80)
    index = _STATIC_NAME.get(name)
    if index is not None:
        return encode_int(index, 4) + encode_str(value)
    return b"\x00" + encode_str(name) + encode_str(value)
