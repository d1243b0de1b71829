"""Live parts over Server-Sent Events: a deployment's status (request counts, loaded
versions, charts) and its log lines, filterable by component, level and request id.

A stream lives at most ``STREAM_SECONDS`` and then ends; the browser's ``EventSource``
reconnects at once and sends the last event id, which for logs holds the byte offsets read
so far, so no line is lost or repeated across reconnects (and a server shutting down is
never held open by a watching browser for longer than that).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tureen.console.http import ConsoleRequest, Stream, seg
from tureen.console.logtail import LogFilter, follow, tail
from tureen.console.page import Page, route, to_json
from tureen.console.services import ConsoleServices
from tureen.console.views.deployments import _live, charts
from tureen.deployments import DeploymentSpec

STREAM_SECONDS = 15.0
STATUS_SECONDS = 1.0
SPEC_SECONDS = 5.0  # how often a status stream re-reads the spec (counts: every tick)
CHART_TICKS = 5  # charts are redrawn every 5th tick (a browser redraws SVG at a cost)


def event(kind: str, data: Any, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: ".encode() + to_json(data) + b"\n\n"


def _filter(req: ConsoleRequest) -> LogFilter:
    return LogFilter.parse(req.arg("component"), req.arg("level"), req.arg("request_id"))


def logs_page(req: ConsoleRequest, svc: ConsoleServices) -> Page:
    spec = svc.deployments.get(req.params["name"])
    flt = _filter(req)
    n = min(max(int(req.arg("tail", "200") or 200) if req.arg("tail").isdigit() else 200, 1),
            2000)
    data = {"name": spec.name, "filters": {"component": req.arg("component"),
                                           "level": req.arg("level"),
                                           "request_id": req.arg("request_id")},
            "lines": tail(svc.repo_path, spec.name, flt, n)}
    return Page("logs.html", data, f"Logs of {spec.name}",
                crumbs=[("Deployments", "/deployments"),
                        (spec.name, f"/deployments/{seg(spec.name)}")])


async def log_stream(req: ConsoleRequest, svc: ConsoleServices) -> Stream:
    spec = await asyncio.to_thread(svc.deployments.get, req.params["name"])
    flt = _filter(req)
    resume = _offsets(req.headers.get("last-event-id", ""))

    async def body() -> AsyncIterator[bytes]:
        yield b"retry: 500\n\n"
        async for lines, offsets in _follow(svc.repo_path, spec.name, flt, resume):
            if lines:
                yield event("log", lines, _offsets_id(offsets))
            else:
                yield b": ping\n\n"

    return Stream(body())


async def _follow(repo: Path, name: str, flt: LogFilter, resume: dict[str, int]
                  ) -> AsyncIterator[tuple[list[dict[str, Any]], dict[str, int]]]:
    async for lines, offsets in follow(repo, name, flt, STREAM_SECONDS, resume):
        yield lines, offsets


def _offsets(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in text.split(",")[:4]:
        comp, _, num = part.partition(":")
        if comp in ("predictor", "transformer") and num.isdigit() and len(num) < 16:
            out[comp] = int(num)
    return out


def _offsets_id(offsets: dict[str, int]) -> str:
    return ",".join(f"{c}:{n}" for c, n in sorted(offsets.items()))


def cached_spec(svc: ConsoleServices, name: str) -> DeploymentSpec | None:
    """The spec as the registry snapshot the store caches has it (a status stream's caller
    was allowed to see the deployment when the stream opened)."""
    raw = (svc.features.snapshot().extra.get("deployments") or {}).get(name)
    return None if raw is None else DeploymentSpec.from_dict(raw)


def status_snapshot(svc: ConsoleServices, name: str, with_charts: bool,
                    spec: DeploymentSpec | None = None) -> dict[str, Any]:
    """The live part of a deployment's page."""
    spec = spec or cached_spec(svc, name)
    if spec is None:
        return {"name": name, "deleted": True}
    workers = svc.rates.sample(name).workers
    out = {"name": name, "state": spec.state, "version": spec.version,
           "canary": None if spec.canary is None else {"version": spec.canary.version,
                                                       "percent": spec.canary.percent},
           "live": _live(workers, spec)}
    if with_charts:
        c = charts(svc, name)
        out["rate_svg"] = str(c["rate_svg"])
        out["latency_svg"] = str(c["latency_svg"])
    return out


async def status_stream(req: ConsoleRequest, svc: ConsoleServices) -> Stream:
    name = req.params["name"]
    await asyncio.to_thread(svc.deployments.get, name)
    with_charts = req.arg("charts") != "0"

    async def body() -> AsyncIterator[bytes]:
        yield b"retry: 500\n\n"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STREAM_SECONDS
        spec, read_at, tick = None, -SPEC_SECONDS, 0
        while loop.time() < deadline:
            if loop.time() - read_at >= SPEC_SECONDS:
                spec, read_at = await asyncio.to_thread(cached_spec, svc, name), loop.time()
            # soon after opening (a rate needs two samples), then every CHART_TICKS ticks
            charts_now = with_charts and (tick < 3 or tick % CHART_TICKS == 0)
            tick += 1
            snap = await asyncio.to_thread(status_snapshot, svc, name, charts_now, spec)
            yield event("status", snap)
            await asyncio.sleep(STATUS_SECONDS)

    return Stream(body())


ROUTES = [
    route("GET", "/deployments/{name}/logs", logs_page),
    route("GET", "/deployments/{name}/logs/stream", stream=log_stream),
    route("GET", "/deployments/{name}/status/stream", stream=status_stream),
]
