"""tureen's HTTP/1.1 server: a native fast path plus an ASGI fallback on one socket.

- ``HTTPServer(app, resolver=..., max_body_bytes=..., keep_alive_timeout=5.0)``;
  ``await start(sock)``, ``await shutdown(grace)``.
- ``NativeResolver.resolve(method, path, query) -> NativeHandler | None``; a ``NativeHandler`` is
  ``async (headers, body) -> (status, body, content_type, extra_headers)``.
"""

from tureen.transports.http1.native import Body, Headers, NativeHandler, NativeResolver, Reply
from tureen.transports.http1.server import HTTPServer

__all__ = ["Body", "HTTPServer", "Headers", "NativeHandler", "NativeResolver", "Reply"]
