"""The model a transformer feeds: in the same process (fused) or remote (split).

``ModelInput`` is what the transformer built: one ``[N, F]`` matrix or typed columns. Each
predictor turns it into the request its model speaks (a numpy array / ``InferRequest`` in
process; KServe v1 JSON, OIP REST or OIP gRPC remotely) and returns the model's result
unchanged; the data plane encodes it for whichever protocol the client used.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tureen.codecs.table import PANDAS_CONTENT_TYPE
from tureen.errors import BackendUnavailableError
from tureen.serving.clients import PredictorClient
from tureen.serving.inference import InferInput, InferRequest, InferResponse, TensorSpec
from tureen.serving.model import Headers, Model
from tureen.transformer.errors import UpstreamTimeoutError, classify
from tureen.types import oip_datatype_of

NDArray = np.ndarray[Any, Any]


@dataclass
class ModelInput:
    matrix: NDArray | None = None
    columns: list[tuple[str, NDArray]] | None = None
    #: names of the matrix's columns (features in order), for v1 object rows and scripts
    names: list[str] | None = None
    #: OIP datatype of ``matrix`` when known (saves inspecting the array)
    datatype: str | None = None

    def infer_request(self, model: str, input_name: str) -> InferRequest:
        if self.matrix is not None:
            m = self.matrix
            dt = self.datatype or oip_datatype_of(m)
            return InferRequest(model, [InferInput(input_name, dt, list(m.shape), m)])
        cols = self.columns or []
        return InferRequest(
            model, [InferInput(n, oip_datatype_of(a), [len(a)], a) for n, a in cols],
            parameters={"content_type": PANDAS_CONTENT_TYPE},
        )

    def split(self, counts: Sequence[int]) -> list[ModelInput]:
        """Cut a merged batch back into consecutive per-request slices of ``counts`` rows."""
        bounds = [0, *itertools.accumulate(counts)]
        spans = list(itertools.pairwise(bounds))
        if self.matrix is not None:
            return [ModelInput(matrix=self.matrix[a:b], names=self.names,
                               datatype=self.datatype) for a, b in spans]
        return [ModelInput(columns=[(n, c[a:b]) for n, c in (self.columns or [])],
                           names=self.names) for a, b in spans]

    def v1_body(self) -> dict[str, Any]:
        if self.matrix is not None:
            return {"instances": self.matrix.tolist()}
        cols = self.columns or []
        lists = [(n, _jsonable(a)) for n, a in cols]
        n = len(lists[0][1]) if lists else 0
        return {"instances": [{k: v[i] for k, v in lists} for i in range(n)]}


def _jsonable(a: NDArray) -> list[Any]:
    vals: list[Any] = a.tolist()
    if a.dtype.kind == "f":
        return [None if v != v else v for v in vals]
    return [v.decode() if isinstance(v, bytes) else v for v in vals]


class InProcessPredictor:
    """Calls a loaded ``Model``'s preprocess / predict / postprocess directly."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.input_name = model.inputs[0].name if len(model.inputs) == 1 else "input-0"
        stages = [model.preprocess, model.predict, model.postprocess]
        self.is_async = any(inspect.iscoroutinefunction(s) for s in stages)

    @property
    def inputs(self) -> list[TensorSpec]:
        return self.model.inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self.model.outputs

    def _payload(self, x: ModelInput) -> Any:
        return x.infer_request(self.model.name, self.input_name)

    def call_sync(self, x: ModelInput, headers: Headers) -> Any:
        m = self.model
        return m.postprocess(m.predict(m.preprocess(self._payload(x), headers), headers), headers)

    async def call(self, x: ModelInput, headers: Headers) -> Any:
        m = self.model
        payload = self._payload(x)
        for stage in (m.preprocess, m.predict, m.postprocess):
            if inspect.iscoroutinefunction(stage):
                payload = await stage(payload, headers)
            else:
                payload = await asyncio.to_thread(stage, payload, headers)
        return payload

    async def close(self) -> None:
        self.model.unload()


class RemotePredictor:
    """Sends the model input to a predictor over v1, v2 or grpc-v2, with retries.

    The client (a pooled httpx or grpc.aio connection) is created on first use, inside the
    serving event loop it belongs to (``load`` runs in a worker thread).
    """

    is_async = True

    def __init__(
        self, make_client: Callable[[], PredictorClient], protocol: str, model: str, *,
        input_name: str | None, deadline: float,
    ) -> None:
        self.make_client = make_client
        self.protocol = protocol
        self.model = model
        self.input_name = input_name or "input-0"
        self.deadline = deadline
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self._client: PredictorClient | None = None

    async def call(self, x: ModelInput, headers: Headers) -> Any:
        client = self._client
        if client is None:
            client = self._client = self.make_client()
        try:
            if self.protocol == "v1":
                return await asyncio.wait_for(
                    client.predict_v1(self.model, x.v1_body(), headers), self.deadline)
            response: InferResponse = await asyncio.wait_for(
                client.infer(x.infer_request(self.model, self.input_name), headers),
                self.deadline)
            return response
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"predictor {self.model!r} did not answer within {self.deadline:g} s "
                "(including retries); check its health or raise timeout_seconds."
            ) from None
        except BackendUnavailableError as exc:
            raise classify(exc) from None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def describe_remote(pred: RemotePredictor, host: str, protocol: str, tls: Any = None) -> bool:
    """Read the remote predictor's declared signature (OIP metadata); silent on failure.
    It carries the current request's credentials (or the service token), like predict.
    False when the predictor wanted credentials this call did not have (retry with a
    request's)."""
    from tureen.serving.clients import client_ssl, forward_headers, service_token
    from tureen.serving.context import current

    ctx = current()
    headers = forward_headers(ctx.headers if ctx is not None else None, service_token())
    try:
        if protocol == "v2":
            base = host if "://" in host else ("https://" if tls else "http://") + host
            r = httpx.get(f"{base.rstrip('/')}/v2/models/{pred.model}", timeout=2.0,
                          headers=headers, verify=client_ssl(tls) or True)
            if r.status_code != 200:
                return r.status_code not in (401, 403)
            md = r.json()
        elif protocol == "grpc-v2":
            import grpc

            try:
                md = _grpc_metadata(host, pred.model, tls, headers)
            except grpc.RpcError as exc:
                return exc.code() not in (grpc.StatusCode.UNAUTHENTICATED,
                                          grpc.StatusCode.PERMISSION_DENIED)
        else:
            return True
    except Exception:  # the predictor may start later; _maybe_describe retries
        return True
    pred.inputs = [TensorSpec(t["name"], t["datatype"], list(t["shape"]))
                   for t in md.get("inputs", [])]
    pred.outputs = [TensorSpec(t["name"], t["datatype"], list(t["shape"]))
                    for t in md.get("outputs", [])]
    return True


def _grpc_metadata(host: str, model: str, tls: Any, headers: dict[str, str]
                   ) -> dict[str, Any]:
    import grpc

    from tureen.codecs.pb import inference_pb2 as pb

    target = host.split("://", 1)[-1]
    if tls is not None or host.startswith("https://"):
        def read(path: str | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        creds = grpc.ssl_channel_credentials(
            read(tls.ca_file if tls else None), read(tls.key if tls else None),
            read(tls.cert if tls else None))
        channel = grpc.secure_channel(target, creds)
    else:
        channel = grpc.insecure_channel(target)
    md_out = tuple((k, v) for k, v in headers.items() if k == "authorization")
    with channel as ch:
        call = ch.unary_unary(
            "/inference.GRPCInferenceService/ModelMetadata",
            request_serializer=pb.ModelMetadataRequest.SerializeToString,
            response_deserializer=pb.ModelMetadataResponse.FromString,
        )
        md = call(pb.ModelMetadataRequest(name=model), timeout=2.0, metadata=md_out)
    return {
        "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                   for t in md.inputs],
        "outputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                    for t in md.outputs],
    }
