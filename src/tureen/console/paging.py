"""Keyset pagination: a page is "the next N items after this key", never an offset, so a
list of 100,000 items costs one page of work however deep the reader goes."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tureen.errors import InvalidRequestError

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next: str | None  # the cursor of the page after this one


def limit_arg(text: str, default: int = DEFAULT_LIMIT) -> int:
    if not text:
        return default
    try:
        n = int(text)
    except ValueError:
        raise InvalidRequestError(f"limit {text[:20]!r} is not a number; use 1 to "
                                  f"{MAX_LIMIT}.") from None
    if not 1 <= n <= MAX_LIMIT:
        raise InvalidRequestError(f"limit {n} is out of range; use 1 to {MAX_LIMIT}.")
    return n


def encode_cursor(key: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(text: str, arity: int) -> list[Any] | None:
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        key = json.loads(raw)
    except ValueError:
        key = None
    if not isinstance(key, list) or len(key) != arity or not all(
            isinstance(k, (str, int, float)) or k is None for k in key):
        raise InvalidRequestError("the page cursor is not valid; start again from the first "
                                  "page.")
    return key


Key = tuple[Any, ...]


def after(items: Iterable[T], key: Callable[[T], Key], cursor: Sequence[Any] | None,
          limit: int) -> Page[T]:
    """The first ``limit`` items with ``key(item) > cursor``; ``items`` come sorted ascending
    by ``key`` (negate a number to page descending)."""
    start = None if cursor is None else tuple(cursor)
    out: list[T] = []
    for item in items:
        if start is not None and not key(item) > start:
            continue
        if len(out) == limit:
            return Page(out, encode_cursor(key(out[-1])))
        out.append(item)
    return Page(out, None)
