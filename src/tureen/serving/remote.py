"""``RemoteModel``: a Model whose predict forwards to a predictor elsewhere (KServe transformer
shape: subclass it and override ``preprocess`` / ``postprocess``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tureen.codecs.v1 import instances_of, instances_to_array
from tureen.serving.clients import PredictorClient
from tureen.serving.inference import InferInput, InferRequest, InferResponse
from tureen.serving.model import Headers, Model
from tureen.types import OIP_NUMPY, oip_datatype_of


class RemoteModel(Model):
    def __init__(
        self,
        name: str,
        client: PredictorClient,
        remote_name: str | None = None,
        input_datatype: str = "FP32",
    ) -> None:
        """``input_datatype``: the OIP datatype v1 rows are sent as to a v2/grpc-v2 predictor."""
        super().__init__(name)
        self.client = client
        self.remote_name = remote_name or name
        self.input_dtype = OIP_NUMPY[input_datatype]
        self.ready = True

    async def predict(self, payload: Any, headers: Headers | None = None) -> Any:
        if self.client.protocol == "v1":
            if isinstance(payload, InferRequest):
                payload = {"instances": payload.as_numpy()}
            return await self.client.predict_v1(self.remote_name, payload, headers)
        if isinstance(payload, InferRequest):
            request = payload
            request.model_name = self.remote_name
            request.model_version = None
            out: InferResponse = await self.client.infer(request, headers)
            return out
        arr = payload if isinstance(payload, np.ndarray) else instances_to_array(
            instances_of(payload), self.input_dtype)
        request = InferRequest(self.remote_name, [
            InferInput("input-0", oip_datatype_of(arr), list(arr.shape), arr)
        ])
        return await self.client.infer(request, headers)
