"""HTTP/2 request header validation (RFC 9113 §8.1.1, §8.2, §8.3.1).

A request whose header block breaks these rules is malformed: the stream gets RST_STREAM
(PROTOCOL_ERROR) and nothing of it reaches the application.

- field names are lowercase tokens; values have no NUL, CR, LF or other control characters
  and no leading or trailing whitespace (RFC 9110 field syntax, ``tureen.serving.fields``);
- no connection-specific fields (``connection``, ``keep-alive``, ``proxy-connection``,
  ``transfer-encoding``, ``upgrade``); ``te`` only as ``trailers``;
- pseudo-header fields come first, are one of ``:method`` ``:scheme`` ``:path``
  ``:authority``, none twice, and ``:method``, ``:scheme`` and a non-empty ``:path`` are all
  present (CONNECT is not served);
- ``content-length``, when sent, is a number (checked against the DATA received at the end);
- trailers carry no pseudo-header fields.
"""

from __future__ import annotations

from typing import NamedTuple

from tureen.serving.fields import valid_name, valid_value
from tureen.transports.grpc.hpack import Header

CONNECTION_SPECIFIC = frozenset({"connection", "keep-alive", "proxy-connection",
                                 "transfer-encoding", "upgrade"})
PSEUDO = frozenset({":method", ":scheme", ":path", ":authority"})


class MalformedError(ValueError):
    """A malformed request or trailers (a stream error PROTOCOL_ERROR)."""


class Request(NamedTuple):  # a tuple: built per request, cheaper than a frozen dataclass
    method: str
    path: str
    #: regular fields, in order, repeated names kept
    fields: tuple[Header, ...]
    content_length: int | None


def _check_field(name: str, value: str) -> None:
    if not valid_name(name, lowercase=True):
        raise MalformedError(f"header name {name[:40]!r} is not a lowercase token")
    if name in CONNECTION_SPECIFIC:
        raise MalformedError(f"connection-specific header {name!r} is not allowed in HTTP/2")
    _check_value(name, value)


def _check_value(name: str, value: str) -> None:
    """The checks of ``_check_field`` that depend on the value."""
    if not valid_value(value):
        raise MalformedError(f"header {name!r} has a value with control characters or "
                             "surrounding whitespace")
    if name == "te" and value != "trailers":
        raise MalformedError("te may only be 'trailers'")


def parse_request(headers: tuple[Header, ...]) -> Request:
    pseudo: dict[str, str] = {}
    fields: list[Header] = []
    content_length: int | None = None
    for name, value in headers:
        if name[:1] == ":":
            if fields:
                raise MalformedError(f"pseudo-header {name} after a regular header")
            if name not in PSEUDO:
                raise MalformedError(f"unknown pseudo-header {name[:40]!r}")
            if name in pseudo:
                raise MalformedError(f"pseudo-header {name} appears twice")
            if not valid_value(value):
                raise MalformedError(f"pseudo-header {name} has control characters")
            pseudo[name] = value
            continue
        _check_field(name, value)
        if name == "content-length":
            if not value.isdigit() or (content_length is not None
                                       and int(value) != content_length):
                raise MalformedError("content-length is not one non-negative number")
            content_length = int(value)
        fields.append((name, value))
    method, path = pseudo.get(":method"), pseudo.get(":path")
    if method is None or path is None or ":scheme" not in pseudo:
        missing = [p for p in (":method", ":scheme", ":path") if p not in pseudo]
        raise MalformedError(f"missing pseudo-header {', '.join(missing)}")
    if method == "CONNECT":
        raise MalformedError("CONNECT is not served here")
    if not path:
        raise MalformedError(":path is empty")
    return Request(method, path, tuple(fields), content_length)


def _hole_fields(request: Request, size: int, holes: tuple[tuple[int, str], ...]
                 ) -> list[tuple[int, str]] | None:
    """Where the ``holes`` (positions in a list of ``size`` headers) are in
    ``request.fields``; None when one is a pseudo-header or ``content-length``."""
    skip = size - len(request.fields)  # the pseudo-headers, first
    out = []
    for i, name in holes:
        if i < skip or name == "content-length":
            return None
        out.append((i - skip, name))
    return out


def blanked(request: Request, size: int, holes: tuple[tuple[int, str], ...]) -> Request | None:
    """``request`` (parsed from a list of ``size`` headers) with the values at ``holes``
    blank, to ``refill`` later; None when a hole needs the full parse each time."""
    where = _hole_fields(request, size, holes)
    if where is None:
        return None
    fields = list(request.fields)
    for j, name in where:
        fields[j] = (name, "")
    return Request(request.method, request.path, tuple(fields), request.content_length)


def refill(blank: Request, headers: tuple[Header, ...],
           holes: tuple[tuple[int, str], ...]) -> Request:
    """``parse_request(headers)``, for ``headers`` that differ from the list ``blank`` was
    parsed from only in the values at ``holes``: only those values are checked (the names
    passed when ``blank`` was parsed)."""
    fields = list(blank.fields)
    skip = len(headers) - len(fields)
    for i, name in holes:
        value = headers[i][1]
        _check_value(name, value)
        fields[i - skip] = (name, value)
    return Request(blank.method, blank.path, tuple(fields), blank.content_length)


def check_trailers(headers: tuple[Header, ...]) -> None:
    for name, value in headers:
        if name[:1] == ":":
            raise MalformedError(f"pseudo-header {name[:40]} in trailers")
        _check_field(name, value)
