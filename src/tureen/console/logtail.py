"""Deployment log lines for the console: the last N matching lines (read backwards from the
end, bounded), and new lines as they are written (a 50 ms poll of the file size; a file that
shrank was rotated or truncated and is read again from its start)."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tureen.deployments.status import log_path
from tureen.errors import InvalidRequestError

COMPONENTS = ("predictor", "transformer")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_SCAN_BYTES = 4 * 1024 * 1024  # a tail never reads more than this much of a file
MAX_TICK_BYTES = 256 * 1024  # a follower never reads more than this per poll
MAX_LINE_CHARS = 4000
POLL_SECONDS = 0.05

# 2026-05-01 12:00:00,123 INFO 1234 tureen.deployments.fraud.predictor [rid]: message
_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ([A-Z]+) (\d+) (\S+?)"
                   r"(?: \[([^\]]*)\])?: (.*)$")


@dataclass(frozen=True)
class LogFilter:
    components: tuple[str, ...] = COMPONENTS
    min_level: str = "DEBUG"
    request_id: str = ""

    @classmethod
    def parse(cls, component: str, level: str, request_id: str) -> LogFilter:
        comps: tuple[str, ...] = COMPONENTS
        if component:
            if component not in COMPONENTS:
                raise InvalidRequestError(
                    f"component {component[:40]!r} is not valid; use predictor or transformer.")
            comps = (component,)
        lvl = (level or "DEBUG").upper()
        if lvl not in LEVELS:
            raise InvalidRequestError(
                f"level {level[:20]!r} is not valid; use one of {', '.join(LEVELS)}.")
        if len(request_id) > 128:
            raise InvalidRequestError("a request id has at most 128 characters.")
        return cls(comps, lvl, request_id.strip())

    def accepts(self, line: dict[str, Any]) -> bool:
        level = line["level"]
        if level in LEVELS and LEVELS.index(level) < LEVELS.index(self.min_level):
            return False
        return not self.request_id or self.request_id == line["request_id"] or (
            self.request_id in line["message"])


def parse_line(text: str, component: str) -> dict[str, Any]:
    text = text[:MAX_LINE_CHARS]
    m = _LINE.match(text)
    if m is None:  # a traceback line or another format: kept, attached to nothing
        return {"at": "", "level": "INFO", "pid": None, "logger": "", "request_id": "",
                "message": text, "component": component}
    at, level, pid, logger, rid, msg = m.groups()
    return {"at": at, "level": level, "pid": int(pid), "logger": logger,
            "request_id": "" if rid in (None, "-") else rid, "message": msg,
            "component": component}


def paths(repo_path: Path, deployment: str, components: Sequence[str]) -> list[tuple[str, Path]]:
    return [(c, log_path(repo_path, deployment, c)) for c in components]


def _tail_file(path: Path, component: str, n: int, flt: LogFilter) -> list[dict[str, Any]]:
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return []
    with f:
        end = f.seek(0, os.SEEK_END)
        pos, buf, scanned = end, b"", 0
        found: list[dict[str, Any]] = []
        while pos > 0 and scanned < MAX_SCAN_BYTES:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + buf
            scanned += step
            lines = buf.split(b"\n")
            buf = lines[0] if pos > 0 else b""
            chunk = [parse_line(x.decode("utf-8", "replace"), component)
                     for x in (lines[1:] if pos > 0 else lines) if x]
            found = [x for x in chunk if flt.accepts(x)] + found
            if len(found) >= n:
                break
        return found[-n:]


def tail(repo_path: Path, deployment: str, flt: LogFilter, n: int = 200
         ) -> list[dict[str, Any]]:
    """The last ``n`` lines passing ``flt`` across the components, oldest first."""
    lines: list[dict[str, Any]] = []
    for comp, path in paths(repo_path, deployment, flt.components):
        lines.extend(_tail_file(path, comp, n, flt))
    lines.sort(key=lambda x: x["at"])
    return lines[-n:]


async def follow(repo_path: Path, deployment: str, flt: LogFilter, stop_after: float,
                 resume: dict[str, int] | None = None
                 ) -> AsyncIterator[tuple[list[dict[str, Any]], dict[str, int]]]:
    """Yield (new lines passing ``flt``, byte offsets read so far) as lines are written
    (also ([], offsets) every few seconds, for a heartbeat), for ``stop_after`` seconds.
    ``resume`` continues from offsets an earlier follower yielded (never past the end)."""
    files = paths(repo_path, deployment, flt.components)
    offsets: dict[str, int] = {}
    for comp, path in files:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        start = (resume or {}).get(comp)
        offsets[comp] = size if start is None or start > size else start
    loop = asyncio.get_running_loop()
    deadline = loop.time() + stop_after
    idle = 0
    while loop.time() < deadline:
        out: list[dict[str, Any]] = []
        for comp, path in files:
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size < offsets[comp]:
                offsets[comp] = 0
            if size == offsets[comp]:
                continue
            with path.open("rb") as f:
                f.seek(offsets[comp])
                data = f.read(min(size - offsets[comp], MAX_TICK_BYTES))
            *complete, rest = data.split(b"\n")
            # only whole lines count as read: a reconnect resumes at the last newline
            offsets[comp] += len(data) - len(rest)
            if len(rest) >= MAX_TICK_BYTES:  # one line longer than a tick: skip past it
                offsets[comp] += len(rest)
            for raw in complete:
                if raw:
                    line = parse_line(raw.decode("utf-8", "replace"), comp)
                    if flt.accepts(line):
                        out.append(line)
        idle = 0 if out else idle + 1
        if out or idle >= 100:  # lines, or a heartbeat every ~5 s
            idle = 0
            yield out, dict(offsets)
        await asyncio.sleep(POLL_SECONDS)
