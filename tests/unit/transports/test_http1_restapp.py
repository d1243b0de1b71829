"""RestApp and the Feast routes as native handlers (``resolve``), no ASGI in between."""

from __future__ import annotations

import gzip
import json
from typing import Any

import orjson
import pytest

from tureen.errors import NotFoundError
from tureen.serving import DataPlane, Model, ModelRepository, VersionPolicy
from tureen.transports.http1.native import NativeResolver, RendersErrors, Reply
from tureen.transports.rest import build_app
from tureen.transports.rest.feast import FeastRoutes


class Doubler(Model):
    def load(self) -> bool:
        self.ready = True
        return True

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        return {"predictions": [[2 * v for v in row] for row in payload["instances"]]}


async def feature(body: bytes) -> tuple[int, Any]:
    if body == b"missing":
        raise NotFoundError("no feature view 'x'; list them with tureen list.")
    return 200, {"got": len(body)}


@pytest.fixture
def dp() -> Any:
    d = DataPlane(ModelRepository(None, VersionPolicy("latest")))
    m = Doubler("m")
    m.load()
    d.register(m)
    yield d
    d.close()


def body_of(reply: Reply) -> Any:
    assert isinstance(reply[1], bytes)
    return orjson.loads(reply[1])


def headers_of(reply: Reply) -> dict[bytes, bytes]:
    return dict(reply[3])


async def test_rest_app_resolves_its_routes_natively(dp: DataPlane) -> None:
    app = build_app(dp, max_request_bytes=1000)
    assert isinstance(app, NativeResolver) and isinstance(app, RendersErrors)
    h = app.resolve("POST", "/v1/models/m:predict")
    assert h is not None
    reply = await h({"x-request-id": "abc"}, b'{"instances": [[1, 2]]}')
    assert reply[0] == 200 and body_of(reply) == {"predictions": [[2, 4]]}
    assert headers_of(reply)[b"x-request-id"] == b"abc"
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    reply = await h({"traceparent": tp, "content-encoding": "gzip"},
                    gzip.compress(b'{"instances": [[3]]}'))
    assert body_of(reply) == {"predictions": [[6]]}
    assert headers_of(reply)[b"traceparent"] == tp.encode()
    assert headers_of(reply)[b"x-request-id"] == b"4bf92f3577b34da6a3ce929d0e0e4736"


async def test_wrong_method_unknown_path_and_limits(dp: DataPlane) -> None:
    app = build_app(dp, max_request_bytes=1000)
    h = app.resolve("GET", "/v1/models/m:predict")
    assert h is not None
    reply = await h({}, b"")
    assert reply[0] == 405 and headers_of(reply)[b"allow"] == b"POST"
    h = app.resolve("GET", "/nowhere")
    assert h is not None
    reply = await h({}, b"")
    assert reply[0] == 404 and "no route /nowhere" in body_of(reply)["error"]
    h = app.resolve("POST", "/v1/models/m:predict")
    assert h is not None
    reply = await h({}, b"[" + b"1," * 600 + b"1]")
    assert reply[0] == 413 and "limit of 1000 bytes" in body_of(reply)["error"]
    reply = app.error_reply({"x-request-id": "r9"}, 413, "too big; send less.")
    assert reply[0] == 413 and headers_of(reply)[b"x-request-id"] == b"r9"


async def test_feast_routes_resolve_natively_through_the_rest_app(dp: DataPlane) -> None:
    routes = FeastRoutes({"/get-online-features": ("POST", feature)})
    app = build_app(dp, [routes])
    h = app.resolve("POST", "/get-online-features")
    assert h is not None
    status, body, ctype, _ = await h({}, b"abc")
    assert (status, json.loads(body if isinstance(body, bytes) else b""), ctype) == (
        200, {"got": 3}, b"application/json")
    h = app.resolve("POST", "/get-online-features")
    assert h is not None
    reply = await h({}, b"missing")
    feast_error = json.loads(body_of(reply))  # Feast's body: the JSON text of an error
    assert reply[0] == 404 and feast_error["message"].startswith("no feature view")
    h = app.resolve("GET", "/get-online-features")
    assert h is not None
    reply = await h({}, b"")
    assert reply[0] == 405 and headers_of(reply)[b"allow"] == b"POST"
    h = app.resolve("GET", "/elsewhere")  # no Starlette routes: the app's own 404
    assert h is not None and (await h({}, b""))[0] == 404
