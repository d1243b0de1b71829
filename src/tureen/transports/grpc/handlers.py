"""``inference.GRPCInferenceService``'s handlers over ``DataPlane``, shared by both gRPC
servers (``h2server`` and the ``grpc.aio`` fallback in ``servicer``); no grpc import here.
Both run them through the guard chain; the call's text metadata (the request context's
``headers``) is what a model sees as request headers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tureen.codecs.oip_proto import decode_request, encode_response
from tureen.codecs.pb import inference_pb2 as pb
from tureen.errors import InvalidRequestError
from tureen.serving.context import current
from tureen.serving.dataplane import DataPlane

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
