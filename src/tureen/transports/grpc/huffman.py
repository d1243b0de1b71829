"""HPACK's Huffman code (RFC 7541, Appendix B): decoding, and encoding for tests and tools.

The code is canonical: sorted by (length, symbol), each code is the previous one plus one,
shifted left when the length grows. So the table below holds only the code lengths of the
257 symbols (0-255 and EOS = 256), copied from Appendix B; the codes are derived from them.
Decoding walks the code tree a byte at a time: a state is a node of the tree, and the row of
a state gives, for each input byte, the node reached and the symbols completed on the way.
Rows are composed from a four-bit table (built at import) the first time a state is reached,
so only the states real input visits cost memory and time.
"""

from __future__ import annotations

EOS = 256

#: bit length of the code of each symbol 0..256, in symbol order (RFC 7541, Appendix B)
LENGTHS: tuple[int, ...] = (
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,  # 0-15
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,  # 16-31
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,  # ' ' - '/'
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,  # '0' - '?'
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,  # '@' - 'O'
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,  # 'P' - '_'
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,  # '`' - 'o'
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,  # 'p' - 127
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,  # 128-143
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,  # 144-159
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,  # 160-175
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,  # 176-191
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,  # 192-207
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,  # 208-223
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,  # 224-239
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,  # 240-255
    30,  # EOS
)


class HuffmanError(ValueError):
    """A Huffman-coded string that is not valid under RFC 7541 §5.2."""


def _canonical_codes() -> list[int]:
    codes = [0] * len(LENGTHS)
    code, prev = 0, 0
    for sym in sorted(range(len(LENGTHS)), key=lambda s: (LENGTHS[s], s)):
        code <<= LENGTHS[sym] - prev
        prev = LENGTHS[sym]
        codes[sym] = code
        code += 1
    return codes


CODES: tuple[int, ...] = tuple(_canonical_codes())

# The tree: node 0 is the root; a child is an internal node id (>= 0) or ~symbol (< 0).
_Table = list[tuple[int, bytes] | None]


def _build() -> tuple[_Table, frozenset[int]]:
    children: list[list[int]] = [[0, 0]]
    ones_depth: dict[int, int] = {0: 0}  # internal nodes reached by all-ones paths -> depth
    for sym, (code, n) in enumerate(zip(CODES, LENGTHS, strict=True)):
        node = 0
        for i in range(n - 1, -1, -1):
            bit = (code >> i) & 1
            if i == 0:
                children[node][bit] = ~sym
            else:
                nxt = children[node][bit]
                if nxt == 0:
                    nxt = len(children)
                    children.append([0, 0])
                    children[node][bit] = nxt
                    if bit and node in ones_depth:
                        ones_depth[nxt] = ones_depth[node] + 1
                node = nxt
    table: _Table = []
    for state in range(len(children)):
        for nibble in range(16):
            node, out, bad = state, bytearray(), False
            for i in (3, 2, 1, 0):
                child = children[node][(nibble >> i) & 1]
                if child < 0:
                    if ~child == EOS:
                        bad = True
                        break
                    out.append(~child)
                    node = 0
                else:
                    node = child
            table.append(None if bad else (node, bytes(out)))
    # a string may end at the root, or inside the EOS code after at most 7 padding bits
    accept = frozenset(n for n, d in ones_depth.items() if d <= 7)
    return table, accept


_TABLE, _ACCEPT = _build()


_NODES = len(_TABLE) // 16
#: (node << 8 | byte) -> (next node << 8, bytes completed); None: not composed yet, or EOS
_BYTES: list[tuple[int, bytes] | None] = [None] * (_NODES << 8)
_COMPOSED = bytearray(_NODES)
_EOS_INSIDE = "Huffman string contains the EOS symbol"


def _compose(node: int, byte: int) -> tuple[int, bytes]:
    """The byte-table entry of (``node``, ``byte``), composing the node's row on first use."""
    if not _COMPOSED[node]:
        for b in range(256):
            hi = _TABLE[(node << 4) | (b >> 4)]
            lo = _TABLE[(hi[0] << 4) | (b & 15)] if hi is not None else None
            if hi is not None and lo is not None:
                _BYTES[(node << 8) | b] = (lo[0] << 8, hi[1] + lo[1])
        _COMPOSED[node] = 1
    entry = _BYTES[(node << 8) | byte]
    if entry is None:
        raise HuffmanError(_EOS_INSIDE)
    return entry


def decode(data: bytes | memoryview) -> bytes:
    table, state, out = _BYTES, 0, []
    for byte in data:
        entry = table[state | byte]
        if entry is None:
            entry = _compose(state >> 8, byte)
        state, emit = entry
        out.append(emit)
    if state >> 8 not in _ACCEPT:
        raise HuffmanError("Huffman string ends in padding that is not a prefix of EOS "
                           "or longer than 7 bits")
    return b"".join(out)


def encode(data: bytes) -> bytes:
    acc, nbits = 0, 0
    for byte in data:
        acc = (acc << LENGTHS[byte]) | CODES[byte]
        nbits += LENGTHS[byte]
    pad = -nbits % 8
    acc = (acc << pad) | ((1 << pad) - 1)
    return acc.to_bytes((nbits + pad) // 8, "big")
