"""``RestApp.resolve`` keeps the handler of a route whose match depends on the path alone,
and asks again for everything else: a route table that does not say ``fixed_paths``, a
request with a query string, a path that matches nothing. The kept handlers are bounded."""

from __future__ import annotations

import asyncio
from typing import Any

from tureen.serving import DataPlane, ModelRepository, VersionPolicy
from tureen.transports.http1.native import Headers, Reply
from tureen.transports.rest import build_app
from tureen.transports.rest.app import RESOLVED_ROUTES


class Table:
    error_detail = False

    def __init__(self, fixed: bool) -> None:
        if fixed:
            self.fixed_paths = True
        self.asked = 0

    def match(self, path: str) -> tuple[str, Any] | None:
        self.asked += 1
        return ("POST", self.answer) if path == "/thing" else None

    async def answer(self, headers: Headers, body: bytes | bytearray) -> Reply:
        return 200, b'{"ok":true}', b"application/json", []


def app_with(table: Table) -> Any:
    return build_app(DataPlane(ModelRepository(None, VersionPolicy("latest"))), [table])


def test_a_fixed_route_is_resolved_once() -> None:
    table = Table(fixed=True)
    app = app_with(table)
    first = app.resolve("POST", "/thing")
    assert app.resolve("POST", "/thing") is first
    assert table.asked == 1
    assert app.resolve("POST", "/thing", b"wait=online") is not first  # a query: not kept
    assert table.asked == 2
    reply = asyncio.run(first({"host": "x"}, b""))
    assert reply[0] == 200 and any(name == b"x-request-id" for name, _ in reply[3])


def test_a_table_that_does_not_say_fixed_paths_is_asked_every_time() -> None:
    table = Table(fixed=False)
    app = app_with(table)
    app.resolve("POST", "/thing")
    app.resolve("POST", "/thing")
    assert table.asked == 2


def test_unmatched_paths_are_not_kept_and_kept_handlers_are_bounded() -> None:
    app = app_with(Table(fixed=True))
    for i in range(3 * RESOLVED_ROUTES):
        app.resolve("POST", f"/v1/models/m{i}:predict")
        app.resolve("GET", f"/nothing/{i}")
    assert 0 < len(app._resolved) <= RESOLVED_ROUTES
    assert not any(path.startswith("/nothing/") for _, path in app._resolved)
