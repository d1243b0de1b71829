"""``inference.GRPCInferenceService``'s handlers over ``DataPlane``, shared by both gRPC
servers (``h2server`` and the ``grpc.aio`` fallback in ``servicer``); no grpc import here.
Both run them through the guard chain; the call's text metadata (the request context's
``headers``) is what a model sees as request headers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from tureen.codecs.oip_proto import decode_request, encode_response, wants_typed_outputs
from tureen.codecs.pb import inference_pb2 as pb
from tureen.codecs.triton_proto import (
    config_message,
    repository_parameters,
    shm_status_message,
    statistics_message,
)
from tureen.errors import InvalidRequestError, NotFoundError, TureenError
from tureen.serving.context import current
from tureen.serving.dataplane import DataPlane
from tureen.serving.inference import InferRequest, InferResponse
from tureen.serving.model_config import check_unload_parameters
from tureen.serving.shared_memory import CUDA_UNSUPPORTED
from tureen.serving.streaming import StreamSession

SERVICE_NAME = "inference.GRPCInferenceService"


def _metadata() -> dict[str, str]:
    ctx = current()
    headers: Mapping[str, str] = ctx.headers if ctx is not None else {}
    return dict(headers)


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
        request = decode_request(req, _metadata())
        response = await self.dp.infer(request, "grpc")
        return encode_response(response, raw=not wants_typed_outputs(request))

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
        await self.dp.load(_model_name(req), repository_parameters(req.parameters))
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(  # noqa: N802
        self, req: pb.RepositoryModelUnloadRequest, ctx: Any
    ) -> pb.RepositoryModelUnloadResponse:
        name = _model_name(req)
        check_unload_parameters(name, repository_parameters(req.parameters))
        await self.dp.unload(name)
        return pb.RepositoryModelUnloadResponse()

    # Triton's extensions

    async def ModelStatistics(  # noqa: N802
        self, req: pb.ModelStatisticsRequest, ctx: Any
    ) -> pb.ModelStatisticsResponse:
        return statistics_message(self.dp.statistics(req.name or None, req.version or None))

    async def ModelConfig(self, req: pb.ModelConfigRequest, ctx: Any) -> pb.ModelConfigResponse:  # noqa: N802
        return config_message(self.dp.model_config(req.name, req.version or None))

    async def SystemSharedMemoryStatus(  # noqa: N802
        self, req: pb.SystemSharedMemoryStatusRequest, ctx: Any
    ) -> pb.SystemSharedMemoryStatusResponse:
        return shm_status_message(self.dp.shared_memory_control().status(req.name or None))

    async def SystemSharedMemoryRegister(  # noqa: N802
        self, req: pb.SystemSharedMemoryRegisterRequest, ctx: Any
    ) -> pb.SystemSharedMemoryRegisterResponse:
        self.dp.shared_memory_control().register(req.name, req.key, req.offset, req.byte_size)
        return pb.SystemSharedMemoryRegisterResponse()

    async def SystemSharedMemoryUnregister(  # noqa: N802
        self, req: pb.SystemSharedMemoryUnregisterRequest, ctx: Any
    ) -> pb.SystemSharedMemoryUnregisterResponse:
        self.dp.shared_memory_control(not req.name).unregister(req.name or None)
        return pb.SystemSharedMemoryUnregisterResponse()

    async def CudaSharedMemoryStatus(  # noqa: N802
        self, req: pb.CudaSharedMemoryStatusRequest, ctx: Any
    ) -> pb.CudaSharedMemoryStatusResponse:
        self.dp.authorize_shared_memory()
        if req.name:
            raise NotFoundError(f"CUDA shared memory region {req.name!r} is not registered; "
                                "this server has no CUDA shared memory.")
        return pb.CudaSharedMemoryStatusResponse()

    async def CudaSharedMemoryRegister(  # noqa: N802
        self, req: pb.CudaSharedMemoryRegisterRequest, ctx: Any
    ) -> pb.CudaSharedMemoryRegisterResponse:
        self.dp.authorize_shared_memory()
        raise InvalidRequestError(CUDA_UNSUPPORTED)

    async def CudaSharedMemoryUnregister(  # noqa: N802
        self, req: pb.CudaSharedMemoryUnregisterRequest, ctx: Any
    ) -> pb.CudaSharedMemoryUnregisterResponse:
        self.dp.authorize_shared_memory(not req.name)
        await self.CudaSharedMemoryStatus(pb.CudaSharedMemoryStatusRequest(name=req.name), ctx)
        return pb.CudaSharedMemoryUnregisterResponse()


async def serve_stream(
    dp: DataPlane, headers: Mapping[str, str], requests: AsyncIterator[pb.ModelInferRequest],
    send: Callable[[pb.ModelStreamInferResponse], Awaitable[None]],
) -> None:
    """``ModelStreamInfer`` on either server: every request of ``requests`` answered through
    ``send`` (responses, and in-stream errors naming the request), until the client
    half-closes and every request was answered."""

    async def emit(response: InferResponse | None, error: str | None,
                   request: InferRequest) -> None:
        if response is not None:
            try:
                answer = encode_response(response, raw=not wants_typed_outputs(request))
            except TureenError as exc:
                error = str(exc)
            else:
                await send(pb.ModelStreamInferResponse(infer_response=answer))
                return
        await send(stream_error(error or "", request.model_name, request.model_version or "",
                                request.id or ""))

    session = StreamSession(dp, emit)
    try:
        async for msg in requests:
            try:
                request = decode_request(msg, dict(headers))
            except TureenError as exc:
                await send(stream_error(str(exc), msg.model_name, msg.model_version, msg.id))
                continue
            await session.submit(request)
        await session.finish()
    except BaseException:
        session.cancel()
        raise


def stream_error(message: str, model: str = "", version: str = "", rid: str = ""
                 ) -> pb.ModelStreamInferResponse:
    """An in-stream error naming the request it answers (the stream goes on)."""
    return pb.ModelStreamInferResponse(error_message=message, infer_response=pb.ModelInferResponse(
        model_name=model, model_version=version, id=rid))


def _model_name(req: Any) -> str:
    """Triton's clients send the model in field 2 (``model_name``); KServe's proto declares
    ``model_name`` as field 1, which arrives here as ``repository_name``. Accept both."""
    name = req.model_name or req.repository_name
    if not name:
        raise InvalidRequestError("the request names no model; set model_name.")
    return str(name)


METHODS: dict[str, tuple[Any, Any]] = {
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
    "RepositoryIndex": (pb.RepositoryIndexRequest, pb.RepositoryIndexResponse),
    "RepositoryModelLoad": (pb.RepositoryModelLoadRequest, pb.RepositoryModelLoadResponse),
    "RepositoryModelUnload": (pb.RepositoryModelUnloadRequest, pb.RepositoryModelUnloadResponse),
    "ModelStatistics": (pb.ModelStatisticsRequest, pb.ModelStatisticsResponse),
    "ModelConfig": (pb.ModelConfigRequest, pb.ModelConfigResponse),
    "SystemSharedMemoryStatus": (pb.SystemSharedMemoryStatusRequest,
                                 pb.SystemSharedMemoryStatusResponse),
    "SystemSharedMemoryRegister": (pb.SystemSharedMemoryRegisterRequest,
                                   pb.SystemSharedMemoryRegisterResponse),
    "SystemSharedMemoryUnregister": (pb.SystemSharedMemoryUnregisterRequest,
                                     pb.SystemSharedMemoryUnregisterResponse),
    "CudaSharedMemoryStatus": (pb.CudaSharedMemoryStatusRequest,
                               pb.CudaSharedMemoryStatusResponse),
    "CudaSharedMemoryRegister": (pb.CudaSharedMemoryRegisterRequest,
                                 pb.CudaSharedMemoryRegisterResponse),
    "CudaSharedMemoryUnregister": (pb.CudaSharedMemoryUnregisterRequest,
                                   pb.CudaSharedMemoryUnregisterResponse),
}
#: bidirectional streaming methods: name -> (request, response message)
STREAMS: dict[str, tuple[Any, Any]] = {
    "ModelStreamInfer": (pb.ModelInferRequest, pb.ModelStreamInferResponse),
}
