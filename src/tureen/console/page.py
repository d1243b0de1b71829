"""What a console view returns (``Page``, ``Redirect``), the route table entry, and the JSON
encoding both a page's twin and the live streams use."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson

from tureen.console.http import ConsoleRequest, Response, Stream
from tureen.console.services import ConsoleServices


@dataclass
class Page:
    template: str
    data: dict[str, Any]
    title: str
    status: int = 200
    crumbs: list[tuple[str, str]] = field(default_factory=list)  # (label, link)


@dataclass
class Redirect:
    location: str  # below the mount point


View = Callable[[ConsoleRequest, ConsoleServices], "Page | Redirect | Response"]
StreamView = Callable[[ConsoleRequest, ConsoleServices], Awaitable[Stream]]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    view: View | None = None
    stream: StreamView | None = None


def route(method: str, path: str, view: View | None = None,
          stream: StreamView | None = None) -> Route:
    """``/models/{name}/{version}``: each ``{x}`` matches one path segment."""
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
    return Route(method, re.compile(f"^{regex}$"), view, stream)


def to_json(data: Any) -> bytes:
    return orjson.dumps(data, default=_default, option=orjson.OPT_NON_STR_KEYS)


def _default(o: Any) -> Any:
    if isinstance(o, (datetime, date)):
        return o.isoformat()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"cannot serialize {type(o).__name__}")
