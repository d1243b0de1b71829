"""The native fast path: handlers that take the whole body and return a reply tuple.

A resolver claims a (method, path) by returning a handler; the server then buffers the body
and calls ``handler(headers, body)`` (header names lowercase). Anything not claimed goes to
the ASGI app. ``query`` is the raw query string (bytes after ``?``; ``b""`` for none).

    class Resolver:
        def resolve(self, method: str, path: str, query: bytes) -> NativeHandler | None: ...

    async def handler(headers, body) -> Reply:
        return 200, b'{"ok":true}', b"application/json", [(b"x-thing", b"1")]
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

Headers = dict[str, str]
#: one bytes object, or parts written back to back without joining (big tensors)
Body = bytes | list[bytes | memoryview]
#: (status, body, content type, extra headers)
Reply = tuple[int, Body, bytes, list[tuple[bytes, bytes]]]
NativeHandler = Callable[[Headers, bytes | bytearray], Awaitable[Reply]]


@runtime_checkable
class NativeResolver(Protocol):
    def resolve(self, method: str, path: str, query: bytes = b"") -> NativeHandler | None: ...


@runtime_checkable
class RendersErrors(Protocol):
    """Optional on a resolver: how the server's own rejections of a request whose headers it
    has (413) look, e.g. to stamp the request id as the app's own replies do."""

    def error_reply(self, headers: Headers, status: int, message: str) -> Reply: ...
