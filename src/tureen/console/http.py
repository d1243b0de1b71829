"""The console's request and response types, and parsing bounded in size.

``ConsoleRequest`` is what a view sees: the method, the path below the mount point, the
query and form fields (the last value of a repeated field wins; sizes bounded before
anything is allocated), the cookies and whether the caller asked for the JSON twin
(``/x.json`` or ``Accept: application/json``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, quote

from tureen.errors import InvalidRequestError

MAX_QUERY_BYTES = 8 * 1024
MAX_FORM_BYTES = 64 * 1024
MAX_FIELDS = 64
MAX_VALUE_CHARS = 4096


@dataclass
class ConsoleRequest:
    method: str
    path: str  # below the mount point, always starting with "/", without a ".json" suffix
    base: str  # the mount point ("" or "/console"): every link starts with it
    query: dict[str, str]
    headers: dict[str, str]
    cookies: dict[str, str]
    wants_json: bool
    form: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    identity: Any = None  # who is asking (set by the guard chain when auth is on)
    scheme: str = "http"

    def arg(self, name: str, default: str = "") -> str:
        return self.query.get(name, default).strip()

    def url(self, path: str) -> str:
        return self.base + path


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Stream:
    """A streamed response (Server-Sent Events)."""

    body: AsyncIterator[bytes]
    content_type: str = "text/event-stream; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


def parse_fields(raw: bytes | str, what: str, limit: int) -> dict[str, str]:
    """``a=1&b=2`` into a dict, refusing more than ``limit`` bytes or MAX_FIELDS fields."""
    if len(raw) > limit:
        raise InvalidRequestError(f"the {what} is longer than {limit} bytes; send less.")
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS * 2)
    if len(pairs) > MAX_FIELDS:
        raise InvalidRequestError(f"the {what} has more than {MAX_FIELDS} fields.")
    out: dict[str, str] = {}
    for k, v in pairs:
        if len(v) > MAX_VALUE_CHARS:
            raise InvalidRequestError(
                f"the {what} field {k[:40]!r} is longer than {MAX_VALUE_CHARS} characters.")
        out[k] = v
    return out


def parse_cookies(header: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header[:MAX_QUERY_BYTES])
    except CookieError:
        return {}
    return {k: m.value for k, m in jar.items()}


def wants_json(raw_path: str, accept: str) -> bool:
    """A literal ``.json`` ending of the path asks for the JSON twin (a name that itself ends
    in ``.json`` is linked with its dot escaped, ``%2Ejson``), and so does an Accept header
    that prefers ``application/json``."""
    if raw_path.endswith(".json"):
        return True
    first = accept.split(",")[0].split(";")[0].strip().lower()
    return first == "application/json"


def seg(name: str | int) -> str:
    """One path segment for a link: percent-encoded, dots too (so ``x.json`` stays a name)."""
    return quote(str(name), safe="").replace(".", "%2E")
