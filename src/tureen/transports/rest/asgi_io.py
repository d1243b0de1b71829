"""The REST app's ASGI side: reading a request body within the server's limit, and sending
a ``Reply`` as ASGI messages.

A body is refused (``PayloadTooLargeError``) as soon as its announced or received size passes
the limit, before it is kept; a body announced larger than 64 KiB is copied once into a
buffer of that size (tensors view into it), and one that disagrees with its Content-Length is
a client mistake. Compressed bodies are inflated against the same limit (no zip bombs).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from starlette.types import Receive, Send

from tureen.errors import InvalidRequestError, PayloadTooLargeError
from tureen.transports.http1.native import Headers, Reply

#: a body announced larger than this is read into one buffer of its announced size
PREALLOCATE_BYTES = 65536


class DisconnectedError(Exception):
    """The client went away before its body arrived."""


def too_large(size: int, limit: int) -> str:
    return (
        f"request body of {size} bytes exceeds the server limit of {limit} bytes; send "
        "smaller batches or raise --max_request_mb."
    )


def inflate(body: bytes | bytearray, encoding: str, limit: int) -> bytes:
    """Decompress a gzip/deflate body, refusing to grow past ``limit`` (no zip bombs)."""
    if encoding == "gzip":
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        d = zlib.decompressobj()
    else:
        raise InvalidRequestError(
            f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or identity."
        )
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidRequestError(f"the {encoding} request body is corrupt ({exc}).") from None
    if len(out) > limit or d.unconsumed_tail:
        raise PayloadTooLargeError(too_large(limit + 1, limit))
    return out


async def read_body(headers: Headers, receive: Receive, limit: int) -> bytes | bytearray:
    """The whole request body from ``receive``; raises ``DisconnectedError``,
    ``PayloadTooLargeError`` past ``limit``, ``InvalidRequestError`` on a wrong length."""
    cl = headers.get("content-length")
    if cl is not None and cl.isdigit():
        n = int(cl)
        if n > limit:
            raise PayloadTooLargeError(too_large(n, limit))
        if n > PREALLOCATE_BYTES:
            return await _announced_body(n, receive)
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise DisconnectedError
        chunk: bytes = msg.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(too_large(size, limit))
            chunks.append(chunk)
        if not msg.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _announced_body(n: int, receive: Receive) -> bytearray:
    """Copy a big body once into a buffer of its announced size (tensors view into it)."""
    buf = bytearray(n)
    view = memoryview(buf)
    pos = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise DisconnectedError
        chunk: bytes = msg.get("body", b"")
        end = pos + len(chunk)
        if end > n:
            raise InvalidRequestError(
                f"request body is longer than its Content-Length {n}; fix the header."
            )
        view[pos:end] = chunk
        pos = end
        if not msg.get("more_body", False):
            break
    if pos != n:
        raise InvalidRequestError(
            f"request body has {pos} bytes but Content-Length says {n}; fix the header."
        )
    return buf


async def send_reply(
    send: Send, reply: Reply, more_headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """``reply`` as ASGI messages, with Content-Length; a body given in parts (big tensors)
    goes out part by part, never joined."""
    status, out, ctype, extra = reply
    size = len(out) if isinstance(out, bytes) else sum(len(p) for p in out)
    headers = [(b"content-type", ctype), (b"content-length", str(size).encode()), *extra,
               *more_headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if isinstance(out, bytes):
        await send({"type": "http.response.body", "body": out})
        return
    for i, part in enumerate(out):
        await send({"type": "http.response.body", "body": part, "more_body": i < len(out) - 1})
