"""What the console knows about registered models without reading every version each time.

A page of versions sorted by number reads one directory listing and the page's metadata
files, however many versions exist. Sorting by a metric or filtering needs every version's
metrics: those are kept as compact summaries (metrics, feature service, framework, creation
time), each read once and re-read when its metadata file changed (checked at most every
``RECHECK_SECONDS``; new and deleted versions show at once).
"""

from __future__ import annotations

import os
import posixpath
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tureen.models.store import ModelStore
from tureen.models.version import METADATA_FILE, ModelVersion, check_name

RECHECK_SECONDS = 5.0


@dataclass(frozen=True)
class Summary:
    version: int
    created_at: datetime
    framework: str
    feature_service: str | None
    metrics: dict[str, float]
    description: str


def summary_of(mv: ModelVersion) -> Summary:
    return Summary(mv.version, mv.created_at, mv.framework, mv.feature_service,
                   dict(mv.metrics), mv.description[:200])


class ModelIndex:
    def __init__(self, store: ModelStore) -> None:
        self.store = store
        self._summaries: dict[str, dict[int, tuple[int, Summary]]] = {}
        self._checked: dict[str, float] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        if not self.store.is_local:
            return self.store.names()
        try:
            with os.scandir(self.store.root) as entries:
                dirs = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
        except FileNotFoundError:
            return []
        return [n for n in dirs if _valid(n) and self.store.version_numbers(n)]

    def versions(self, name: str) -> list[int]:
        return self.store.version_numbers(name)

    def read(self, name: str, versions: Sequence[int]) -> list[ModelVersion]:
        out = []
        for v in versions:
            mv = self.store.read(name, v)
            if mv is not None:
                out.append(mv)
        return out

    def summaries(self, name: str) -> list[Summary]:
        """Every version's summary, ascending by version (re-read when the file changed)."""
        check_name(name)
        now = time.monotonic()
        with self._lock:
            cache = self._summaries.setdefault(name, {})
            recheck = now - self._checked.get(name, -RECHECK_SECONDS) >= RECHECK_SECONDS
            if recheck:
                self._checked[name] = now
        numbers = self.versions(name)
        out: list[Summary] = []
        fresh: dict[int, tuple[int, Summary]] = {}
        for v in numbers:
            hit = cache.get(v)
            if hit is not None and not recheck:
                fresh[v] = hit
                out.append(hit[1])
                continue
            stamp = self._stamp(name, v)
            if hit is not None and hit[0] == stamp:
                fresh[v] = hit
                out.append(hit[1])
                continue
            mv = self.store.read(name, v)
            if mv is None:
                continue
            s = summary_of(mv)
            fresh[v] = (stamp, s)
            out.append(s)
        with self._lock:
            self._summaries[name] = fresh
        return out

    def _stamp(self, name: str, version: int) -> int:
        if not self.store.is_local:
            return 0  # remote stores: versions are immutable once listed
        try:
            return os.stat(posixpath.join(self.store.root, name, str(version),
                                          METADATA_FILE)).st_mtime_ns
        except FileNotFoundError:
            return -1


def _valid(name: str) -> bool:
    try:
        check_name(name)
    except Exception:
        return False
    return True


def metric_names(summaries: Sequence[Summary | ModelVersion]) -> list[str]:
    seen: dict[str, None] = {}
    for s in summaries:
        for k in s.metrics:
            seen.setdefault(k, None)
    return list(seen)


def as_row(s: Summary | ModelVersion) -> dict[str, Any]:
    return {"version": s.version, "created_at": s.created_at, "framework": s.framework,
            "feature_service": s.feature_service, "metrics": dict(s.metrics),
            "description": s.description}
