"""``inference.GRPCInferenceService`` on a ``grpc.aio`` server (the fallback to ``h2server``),
every call through the guard chain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

import grpc

from tureen.error_codes import GrpcStatus
from tureen.serving.dataplane import DataPlane
from tureen.serving.fields import valid_value
from tureen.serving.guard import GuardChain, RequestFailedError
from tureen.transports.grpc.handlers import (
    METHODS,
    SERVICE_NAME,
    STREAMS,
    InferenceServicer,
    serve_stream,
)

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]

__all__ = ["SERVICE_NAME", "InferenceServicer", "add_inference_service", "guarded"]

_CODES = {s.value[0]: s for s in grpc.StatusCode}


def status_code(code: GrpcStatus) -> grpc.StatusCode:
    return _CODES[int(code)]


@runtime_checkable
class _Authenticated(Protocol):
    def auth_context(self) -> dict[str, list[bytes]]: ...


def _peer_cert(ctx: Any) -> dict[str, Any] | None:
    """The verified client certificate of a TLS call (None on plaintext or without one)."""
    if not isinstance(ctx, _Authenticated):
        return None
    pem = (ctx.auth_context() or {}).get("x509_pem_cert")
    if not pem:
        return None
    from tureen.auth.mtls import peercert_from_pem

    return peercert_from_pem(pem[0])


def guarded(name: str, fn: Handler, chain: GuardChain) -> Handler:
    """``fn`` run through ``chain``; failures abort the call with their gRPC code."""
    operation = f"/{SERVICE_NAME}/{name}"

    async def call(req: Any, ctx: grpc.aio.ServicerContext) -> Any:
        md: dict[str, str] = {}
        for k, v in ctx.invocation_metadata() or ():
            if not isinstance(v, str):
                continue
            if not valid_value(v):  # grpc core lets CR, LF and NUL through: refuse them here
                await ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, f"metadata {k[:40]!r} has a "
                                "value with control characters or surrounding whitespace.")
            seen = md.get(k)  # repeated keys are kept, joined as HTTP does
            md[k] = v if seen is None else f"{seen}, {v}"
        gctx = chain.context("grpc", operation, md, peer=ctx.peer(), peer_cert=_peer_cert(ctx))
        ctx.set_trailing_metadata((("x-request-id", gctx.request_id),))
        try:
            return await chain.run(gctx, fn, req, ctx)
        except RequestFailedError as f:
            await ctx.abort(status_code(f.grpc), f.message)

    return call


#: responses a stream may have waiting for the client to read them
MAX_QUEUED = 64


def guarded_stream(name: str, dataplane: DataPlane, chain: GuardChain) -> Any:
    """A bidirectional streaming method (``ModelStreamInfer``) through ``chain``, once per
    stream: its requests are served by ``handlers.serve_stream``."""
    operation = f"/{SERVICE_NAME}/{name}"

    async def call(requests: AsyncIterator[Any], ctx: grpc.aio.ServicerContext
                   ) -> AsyncIterator[Any]:
        md = {k: v for k, v in ctx.invocation_metadata() or () if isinstance(v, str)}
        gctx = chain.context("grpc", operation, md, peer=ctx.peer(), peer_cert=_peer_cert(ctx))
        ctx.set_trailing_metadata((("x-request-id", gctx.request_id),))
        out: asyncio.Queue[Any] = asyncio.Queue(MAX_QUEUED)
        done = object()

        async def serve() -> None:
            try:
                await serve_stream(dataplane, gctx.headers, requests, out.put)
            finally:
                await out.put(done)

        task = asyncio.get_running_loop().create_task(chain.run(gctx, serve))
        try:
            while (item := await out.get()) is not done:
                yield item
            await task
        except RequestFailedError as f:
            await ctx.abort(status_code(f.grpc), f.message)
        finally:
            task.cancel()

    return call


def add_inference_service(server: grpc.aio.Server, dataplane: DataPlane,
                          chain: GuardChain | None = None) -> None:
    """Register the OIP service on ``server``."""
    servicer = InferenceServicer(dataplane)
    chain = chain or GuardChain()
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            guarded(name, getattr(servicer, name), chain),
            request_deserializer=req.FromString,
            response_serializer=resp.SerializeToString,
        )
        for name, (req, resp) in METHODS.items()
    }
    for name, (req, resp) in STREAMS.items():
        handlers[name] = grpc.stream_stream_rpc_method_handler(
            guarded_stream(name, dataplane, chain),
            request_deserializer=req.FromString,
            response_serializer=resp.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
