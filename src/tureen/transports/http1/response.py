"""Response heads as one bytes object: status line, headers, blank line (RFC 9112 §4, §6)."""

from __future__ import annotations

import http
import re
import time
from email.utils import formatdate

import orjson

Header = tuple[bytes, bytes]

_STATUS: dict[int, bytes] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in http.HTTPStatus
}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?")


#: header names already found valid (the same few are sent with every answer)
_VALID_NAMES: set[bytes] = set()


def valid_field(name: bytes, value: bytes) -> bool:
    """RFC 9110 field syntax (the bytes twin of ``tureen.serving.fields``)."""
    if name not in _VALID_NAMES:
        if _NAME.fullmatch(name) is None:
            return False
        if len(_VALID_NAMES) < 256:
            _VALID_NAMES.add(name)
    if value.isascii() and (
        not value or (value.decode("ascii").isprintable() and value[0] != 32 and value[-1] != 32)
    ):
        return True  # printable ASCII, no space at either end: what the pattern matches
    return _VALUE.fullmatch(value) is not None


def status_line(status: int) -> bytes:
    line = _STATUS.get(status)
    if line is None:
        line = _STATUS[status] = f"HTTP/1.1 {status} \r\n".encode()
    return line


class DateHeader:
    """``date: ...\\r\\n`` refreshed by the server's once-a-second sweep, not per request."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = b""
        self.refresh()

    def refresh(self) -> None:
        self.value = b"date: " + formatdate(time.time(), usegmt=True).encode() + b"\r\n"


DATE = DateHeader()


def head(
    status: int,
    content_type: bytes | None,
    length: int | None,
    extra: list[Header],
    close: bool,
) -> bytes:
    """The status line and headers; ``length`` None means ``transfer-encoding: chunked``,
    -1 no framing header at all (1xx, 204, 304)."""
    parts = [_STATUS.get(status) or status_line(status), DATE.value]
    if content_type is not None:
        parts.append(b"content-type: " + content_type + b"\r\n")
    if length is None:
        parts.append(b"transfer-encoding: chunked\r\n")
    elif length >= 0:
        parts.append(b"content-length: %d\r\n" % length)
    for name, value in extra:
        if not valid_field(name, value):
            raise ValueError(f"refusing to send header {name[:40]!r}: not a valid HTTP field")
        parts.append(name + b": " + value + b"\r\n")
    if close:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def error_response(status: int, message: str) -> bytes:
    """A complete JSON ``{"error": message}`` response that closes the connection."""
    body = orjson.dumps({"error": message})
    return head(status, b"application/json", len(body), [], True) + body


def closing_response(
    status: int, body: bytes | list[bytes | memoryview], content_type: bytes, extra: list[Header]
) -> bytes:
    """A complete response (a ``Reply``) that closes the connection."""
    data = body if isinstance(body, bytes) else b"".join(body)
    return head(status, content_type, len(data), extra, True) + data
