"""``inference.GRPCInferenceService`` on a ``grpc.aio`` server (the fallback to ``h2server``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from tureen.errors import TureenError
from tureen.serving.context import request_id, resolve_request_id
from tureen.serving.dataplane import DataPlane
from tureen.transports.grpc.errors import grpc_status
from tureen.transports.grpc.handlers import (
    METHODS,
    SERVICE_NAME,
    InferenceServicer,
    _metadata,
)

log = logging.getLogger(__name__)

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]

__all__ = ["SERVICE_NAME", "InferenceServicer", "_guard", "add_inference_service"]


def _guard(name: str, fn: Handler) -> Handler:
    async def call(req: Any, ctx: grpc.aio.ServicerContext) -> Any:
        md = {k: v for k, v in ctx.invocation_metadata() or () if isinstance(v, str)}
        _metadata.set(md)
        rid = resolve_request_id(md.get("x-request-id"), md.get("traceparent"))
        token = request_id.set(rid)
        try:
            ctx.set_trailing_metadata((("x-request-id", rid),))
            return await fn(req, ctx)
        except TureenError as exc:
            await ctx.abort(grpc_status(exc), str(exc))
        except Exception:
            log.exception("internal error in %s (request id %s)", name, rid)
            await ctx.abort(grpc.StatusCode.INTERNAL,
                            f"internal server error; the server log has the details under "
                            f"request id {rid}.")
        finally:
            request_id.reset(token)

    return call


def add_inference_service(server: grpc.aio.Server, dataplane: DataPlane) -> None:
    """Register the OIP service on ``server``."""
    servicer = InferenceServicer(dataplane)
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            _guard(name, getattr(servicer, name)),
            request_deserializer=req.FromString,
            response_serializer=resp.SerializeToString,
        )
        for name, (req, resp) in METHODS.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
