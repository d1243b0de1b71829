"""``inference.GRPCInferenceService`` on a ``grpc.aio`` server, backed by ``DataPlane``."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from tureen.errors import InvalidRequestError, TureenError
from tureen.serving.context import request_id, resolve_request_id
from tureen.serving.dataplane import DataPlane
from tureen.transports.grpc import inference_pb2 as pb
from tureen.transports.grpc.convert import decode_request, encode_response
from tureen.transports.grpc.errors import grpc_status

log = logging.getLogger(__name__)

SERVICE_NAME = "inference.GRPCInferenceService"
#: the text metadata of the call being served (the model sees it as request headers)
_metadata: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("tureen_grpc_md")
Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class InferenceServicer:
    def __init__(self, dataplane: DataPlane) -> None:
        self.dp = dataplane

    async def ServerLive(self, req: pb.ServerLiveRequest, ctx: Any) -> pb.ServerLiveResponse:  # noqa: N802
        return pb.ServerLiveResponse(live=self.dp.live())

    async def ServerReady(self, req: pb.ServerReadyRequest, ctx: Any) -> pb.ServerReadyResponse:  # noqa: N802
        return pb.ServerReadyResponse(ready=self.dp.ready())

    async def ModelReady(self, req: pb.ModelReadyRequest, ctx: Any) -> pb.ModelReadyResponse:  # noqa: N802
        return pb.ModelReadyResponse(ready=self.dp.model_ready(req.name, req.version or None))

    async def ServerMetadata(  # noqa: N802
        self, req: pb.ServerMetadataRequest, ctx: Any
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**self.dp.server_metadata())

    async def ModelMetadata(  # noqa: N802
        self, req: pb.ModelMetadataRequest, ctx: Any
    ) -> pb.ModelMetadataResponse:
        md = self.dp.model_metadata(req.name, req.version or None)
        t = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=md["name"], versions=md["versions"], platform=md["platform"],
            inputs=[t(**i) for i in md["inputs"]], outputs=[t(**o) for o in md["outputs"]],
        )

    async def ModelInfer(self, req: pb.ModelInferRequest, ctx: Any) -> pb.ModelInferResponse:  # noqa: N802
        self.dp.repository.get(req.model_name, req.model_version or None)  # NOT_FOUND first
        request = decode_request(req, _metadata.get())
        response = await self.dp.infer(request, "grpc")
        return encode_response(response, raw=bool(req.raw_input_contents))

    async def RepositoryIndex(  # noqa: N802
        self, req: pb.RepositoryIndexRequest, ctx: Any
    ) -> pb.RepositoryIndexResponse:
        index = self.dp.repository_index()
        if req.ready:
            index = [m for m in index if m["state"] == "READY"]
        mi = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(models=[mi(**m) for m in index])

    async def RepositoryModelLoad(  # noqa: N802
        self, req: pb.RepositoryModelLoadRequest, ctx: Any
    ) -> pb.RepositoryModelLoadResponse:
        await self.dp.load(_model_name(req))
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(  # noqa: N802
        self, req: pb.RepositoryModelUnloadRequest, ctx: Any
    ) -> pb.RepositoryModelUnloadResponse:
        await self.dp.unload(_model_name(req))
        return pb.RepositoryModelUnloadResponse()


def _model_name(req: Any) -> str:
    """Triton's clients send the model in field 2 (``model_name``); KServe's proto declares
    ``model_name`` as field 1, which arrives here as ``repository_name``. Accept both."""
    name = req.model_name or req.repository_name
    if not name:
        raise InvalidRequestError("the request names no model; set model_name.")
    return str(name)


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


_METHODS: dict[str, tuple[Any, Any]] = {
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
    "RepositoryIndex": (pb.RepositoryIndexRequest, pb.RepositoryIndexResponse),
    "RepositoryModelLoad": (pb.RepositoryModelLoadRequest, pb.RepositoryModelLoadResponse),
    "RepositoryModelUnload": (pb.RepositoryModelUnloadRequest, pb.RepositoryModelUnloadResponse),
}


def add_inference_service(server: grpc.aio.Server, dataplane: DataPlane) -> None:
    """Register the OIP service on ``server``."""
    servicer = InferenceServicer(dataplane)
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            _guard(name, getattr(servicer, name)),
            request_deserializer=req.FromString,
            response_serializer=resp.SerializeToString,
        )
        for name, (req, resp) in _METHODS.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
