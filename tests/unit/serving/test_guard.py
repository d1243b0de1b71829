"""The guard chain: request ids, guards in order, one error table, authorization from the
context — and that REST (own routes, Feast routes, Starlette routes) and gRPC use it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

import httpx
import orjson
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tureen.error_codes import ERROR_CODES, GrpcStatus, codes_of
from tureen.errors import (
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    PermissionDeniedError,
    TooManyRequestsError,
    TureenError,
    UnauthenticatedError,
)
from tureen.serving import DataPlane, Model
from tureen.serving.context import (
    Action,
    Identity,
    RequestContext,
    authorize,
    current,
    resolve_request_id,
)
from tureen.serving.guard import GuardChain, InflightLimit, RequestFailedError
from tureen.transports.rest import build_app
from tureen.transports.rest.feast import FeastRoutes


class Recorder:
    def __init__(self, name: str, log: list[str], refuse: TureenError | None = None) -> None:
        self.name, self.log, self.refuse = name, log, refuse

    def check(self, ctx: RequestContext) -> Awaitable[None] | None:
        self.log.append(f"check {self.name}")
        if self.refuse is not None:
            raise self.refuse
        return None

    def done(self, ctx: RequestContext, error: BaseException | None) -> None:
        self.log.append(f"done {self.name} {type(error).__name__ if error else 'ok'}")


class TokenAuth:
    """What the auth area plugs in: bearer token → identity, async like a JWKS lookup."""

    def check(self, ctx: RequestContext) -> Awaitable[None]:
        async def run() -> None:
            if ctx.bearer != "good":
                raise UnauthenticatedError("send Authorization: Bearer <token>.")
            ctx.identity = Identity("alice", "token", ("reader",))
        return run()

    def done(self, ctx: RequestContext, error: BaseException | None) -> None:
        return None


class ReadersMayNotPredict:
    def check(self, ctx: RequestContext, action: str, resource: str) -> None:
        if ctx.identity is None:
            raise UnauthenticatedError("who are you?")
        if action == Action.PREDICT:
            raise PermissionDeniedError(f"{ctx.identity.subject} may not {action} {resource}.")


def test_request_ids_are_validated_never_echoed_raw() -> None:
    assert resolve_request_id("abc-123_x.y:z/w+=@~", None) == "abc-123_x.y:z/w+=@~"
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    for bad in ("a\nINFO forged line", "x" * 129, "sp ace", "ü", "a\r\nset-cookie: x", ""):
        rid = resolve_request_id(bad, None)
        assert rid != bad and "\n" not in rid and len(rid) <= 128
        assert resolve_request_id(bad, tp) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert resolve_request_id(None, tp + "\n") != tp  # a malformed traceparent is ignored


def test_one_error_table_covers_every_error() -> None:
    assert codes_of(InvalidRequestError("x")) == (400, GrpcStatus.INVALID_ARGUMENT)
    assert codes_of(PayloadTooLargeError("x")) == (413, GrpcStatus.RESOURCE_EXHAUSTED)
    assert codes_of(UnauthenticatedError("x")) == (401, GrpcStatus.UNAUTHENTICATED)
    assert codes_of(PermissionDeniedError("x")) == (403, GrpcStatus.PERMISSION_DENIED)
    assert codes_of(NotFoundError("x")) == (404, GrpcStatus.NOT_FOUND)
    assert codes_of(OverloadedError("x")) == (503, GrpcStatus.UNAVAILABLE)
    assert codes_of(TooManyRequestsError("x")) == (429, GrpcStatus.RESOURCE_EXHAUSTED)
    assert codes_of(RuntimeError("x")) == (500, GrpcStatus.INTERNAL)
    import tureen.errors as errors

    for cls in vars(errors).values():  # a new error gets its codes here, not in a transport
        if isinstance(cls, type) and issubclass(cls, TureenError) and cls is not TureenError:
            assert any(c in ERROR_CODES for c in cls.__mro__[:-4]), cls


async def test_guards_run_in_order_and_done_runs_for_those_that_passed() -> None:
    log: list[str] = []
    chain = GuardChain([Recorder("audit", log), Recorder("limits", log),
                        Recorder("auth", log, UnauthenticatedError("no token; send one."))])
    ctx = chain.context("http", "POST /x", {"x-request-id": "r-1"})

    async def handler() -> str:
        raise AssertionError("never reached")

    with pytest.raises(RequestFailedError) as e:
        await chain.run(ctx, handler)
    assert (e.value.http, e.value.grpc, e.value.message) == (
        401, GrpcStatus.UNAUTHENTICATED, "no token; send one.")
    assert log == ["check audit", "check limits", "check auth",
                   "done limits UnauthenticatedError", "done audit UnauthenticatedError"]


async def test_unknown_errors_are_logged_once_and_never_echoed(
        caplog: pytest.LogCaptureFixture) -> None:
    chain = GuardChain()
    ctx = chain.context("grpc", "/svc/M", {"x-request-id": "rid-9"})

    async def handler() -> None:
        raise KeyError("/etc/secret/path")

    with caplog.at_level(logging.ERROR), pytest.raises(RequestFailedError) as e:
        await chain.run(ctx, handler)
    assert e.value.http == 500 and e.value.grpc == GrpcStatus.INTERNAL
    assert "secret" not in e.value.message and "rid-9" in e.value.message
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "rid-9" in errors[0].getMessage()


async def test_context_is_current_only_inside_the_request() -> None:
    chain = GuardChain([TokenAuth()], ReadersMayNotPredict())
    seen: list[Any] = []

    async def handler() -> None:
        ctx = current()
        assert ctx is not None
        seen.append((ctx.identity, ctx.bearer))
        authorize(Action.READ_FEATURES, "p")

    await chain.run(chain.context("http", "GET /", {"authorization": "Bearer good"}), handler)
    assert seen == [(Identity("alice", "token", ("reader",)), "good")]
    assert current() is None
    authorize(Action.PREDICT, "/m")  # in process, no request: the process may


async def test_inflight_limit_refuses_with_503_and_releases() -> None:
    chain = GuardChain([InflightLimit(1)])
    inner: list[str] = []

    async def nested() -> None:
        inner.append("ran")

    async def outer() -> None:
        with pytest.raises(RequestFailedError) as e:
            await chain.run(chain.context("http", "b", {}), nested)
        assert e.value.http == 503

    await chain.run(chain.context("http", "a", {}), outer)
    assert inner == []
    await chain.run(chain.context("http", "c", {}), nested)
    assert inner == ["ran"]


class Echo(Model):
    def load(self) -> bool:
        self.ready = True
        return True

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        return {"predictions": payload["instances"]}


async def feature(body: bytes) -> tuple[int, Any]:
    return 200, {"features": True}


async def starlette_route(request: Request) -> JSONResponse:
    return JSONResponse({"console": True})


@pytest.fixture
async def guarded_client() -> Any:
    dp = DataPlane()
    m = Echo("m")
    m.load()
    dp.register(m)
    app = build_app(dp, [FeastRoutes({"/get-online-features": ("POST", feature)}),
                         Route("/console", starlette_route)],
                    chain=GuardChain([TokenAuth()], ReadersMayNotPredict()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as c:
        yield c, app
    dp.close()


async def test_every_rest_route_passes_the_chain(guarded_client: Any) -> None:
    client, app = guarded_client
    good = {"authorization": "Bearer good"}
    for method, path in (("POST", "/get-online-features"), ("GET", "/console"),
                         ("POST", "/v1/models/m:predict"), ("GET", "/v2/health/ready")):
        r = await client.request(method, path, content=b"{}")
        assert r.status_code == 401, path
        assert r.headers["x-request-id"]
    r = await client.post("/get-online-features", content=b"{}", headers=good)
    assert r.status_code == 200 and r.json() == {"features": True}
    r = await client.get("/console", headers=good)
    assert r.status_code == 200 and r.headers["x-request-id"]
    # authorization is the service's: the data plane refuses a predict to a reader
    r = await client.post("/v1/models/m:predict", json={"instances": [1]}, headers=good)
    assert r.status_code == 403 and "alice may not predict /m" in r.json()["error"]
    # the same through the native path of tureen's HTTP/1.1 server
    h = app.resolve("POST", "/get-online-features")
    reply = await h({}, b"{}")
    feast_error = orjson.loads(orjson.loads(reply[1]))  # the Feast routes' error body
    assert reply[0] == 401 and feast_error["message"].startswith("send Authorization")


async def test_grpc_aio_calls_pass_the_chain() -> None:
    from tureen.codecs.pb import inference_pb2 as pb
    from tureen.transports.grpc.servicer import InferenceServicer, guarded

    class AbortedError(Exception):
        pass

    class Ctx:
        def __init__(self, md: tuple[tuple[str, str], ...]) -> None:
            self.md, self.aborted, self.trailing = md, ("", ""), ()

        def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
            return self.md

        def peer(self) -> str:
            return "ipv4:127.0.0.1:1"

        def auth_context(self) -> dict[str, list[bytes]]:
            return {}  # a plaintext call: no client certificate

        def set_trailing_metadata(self, md: Any) -> None:
            self.trailing = md

        async def abort(self, code: Any, message: str) -> None:  # grpc.aio raises too
            self.aborted = (code.name, message)
            raise AbortedError

    dp = DataPlane()
    call = guarded("ServerLive", InferenceServicer(dp).ServerLive,
                   GuardChain([TokenAuth()]))
    ctx = Ctx((("x-request-id", "r-1"),))
    with pytest.raises(AbortedError):
        await call(pb.ServerLiveRequest(), ctx)  # type: ignore[arg-type]
    assert ctx.aborted[0] == "UNAUTHENTICATED" and "Bearer" in ctx.aborted[1]
    assert dict(ctx.trailing)["x-request-id"] == "r-1"
    ctx = Ctx((("x-request-id", "bad\nid"), ("authorization", "Bearer good")))
    with pytest.raises(AbortedError):  # grpc core lets the newline through; the servicer not
        await call(pb.ServerLiveRequest(), ctx)  # type: ignore[arg-type]
    assert ctx.aborted[0] == "INVALID_ARGUMENT" and "x-request-id" in ctx.aborted[1]
    dp.close()


async def test_model_control_is_off_unless_enabled() -> None:
    dp = DataPlane()
    with pytest.raises(PermissionDeniedError, match="--enable_model_control"):
        await dp.load("anything")
    with pytest.raises(PermissionDeniedError, match="--enable_model_control"):
        await dp.unload("anything")
    dp.close()


def test_refusals_under_overload_are_logged_once_not_per_request(
        caplog: pytest.LogCaptureFixture) -> None:
    """A 503 for overload was logged per request: a burst of refused requests was also a
    burst of log lines. Each kind of such refusal is now logged once per interval, with a
    count; an unexpected error is still logged every time, with its request id."""
    from tureen.serving.guard import failure_of

    class BusyError(OverloadedError):  # its own kind: other tests' refusals do not count here
        pass

    chain = GuardChain()
    with caplog.at_level("WARNING", logger="tureen.serving.guard"):
        for i in range(300):
            failure_of(chain.context("http", "POST /v2/models/m/infer",
                                     {"x-request-id": f"r{i}"}), BusyError("too busy; retry."))
        assert len([r for r in caplog.records if "too busy" in r.getMessage()]) == 1
        for i in range(3):
            failure_of(chain.context("http", "POST /x", {"x-request-id": f"u{i}"}),
                       RuntimeError("bug"))
    assert len([r for r in caplog.records if "internal error" in r.getMessage()]) == 3
