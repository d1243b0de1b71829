"""Jinja filters: how times, durations and numbers read on every page."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any


def ts(value: Any) -> str:
    """``2026-05-01 12:00:03 UTC`` (input: datetime or ISO string; '' for None)."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return str(value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))
    return str(value)


def duration(seconds: Any) -> str:
    if seconds is None:
        return ""
    s = float(seconds)
    if s == 0:
        return "0"
    if s < 1:
        return f"{s * 1000:.1f} ms"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def ttl(seconds: Any) -> str:
    return "unbounded" if not seconds else duration(seconds)


def num(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e12 or abs(value) < 1e-3):
            return f"{value:.{digits}g}"
        return f"{value:,.{digits}f}".rstrip("0").rstrip(".")
    return str(value)


def ms(seconds: Any) -> str:
    return "" if seconds is None else f"{float(seconds) * 1000:.2f}"


FILTERS: dict[str, Callable[..., str]] = {
    "ts": ts, "duration": duration, "ttl": ttl, "num": num, "ms": ms,
}
