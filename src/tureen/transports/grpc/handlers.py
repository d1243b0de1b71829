"""``inference.GRPCInferenceService``'s handlers over ``DataPlane``, shared by both gRPC
servers (``h2server`` and the ``grpc.aio`` fallback in ``servicer``); no grpc import here."""

from __future__ import annotations

import contextvars
from typing import Any

from tureen.errors import InvalidRequestError
from tureen.serving.dataplane import DataPlane
from tureen.transports.grpc import inference_pb2 as pb
from tureen.transports.grpc.convert import decode_request, encode_response

SERVICE_NAME = "inference.GRPCInferenceService"
#: the text metadata of the call being served (the model sees it as request headers)
_metadata: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("tureen_grpc_md")


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
}
