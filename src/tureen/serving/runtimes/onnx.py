"""ONNX models through onnxruntime; inputs and outputs keep the graph's names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tureen.errors import InvalidRequestError
from tureen.serving.inference import InferRequest, TensorSpec
from tureen.serving.model import Headers
from tureen.serving.runtimes.base import ArrayModel

_ONNX_OIP = {
    "tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16",
    "tensor(int8)": "INT8", "tensor(int16)": "INT16", "tensor(int32)": "INT32",
    "tensor(int64)": "INT64", "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64", "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}


def _shape(dims: list[Any]) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in dims]


class ONNXModel(ArrayModel):
    platform = "onnxruntime_onnx"
    _session: Any = None

    def __init__(self, name: str, path: Path) -> None:
        super().__init__(name, path)
        self.max_batch_size = 0  # graphs may have several inputs or fixed batch dims

    def load(self) -> bool:
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(self.path), opts, providers=["CPUExecutionProvider"]
        )
        self.inputs = [
            TensorSpec(i.name, _ONNX_OIP.get(i.type, "BYTES"), _shape(i.shape))
            for i in self._session.get_inputs()
        ]
        self.outputs = [
            TensorSpec(o.name, _ONNX_OIP.get(o.type, "BYTES"), _shape(o.shape))
            for o in self._session.get_outputs() if o.type in _ONNX_OIP
        ]
        self.ready = True
        return True

    def unload(self) -> None:
        self._session = None

    def predict(self, payload: Any, headers: Headers | None = None) -> Any:
        if isinstance(payload, InferRequest) and len(payload.inputs) > 1:
            feeds = {i.name: i.data for i in payload.inputs}
            return self._run(feeds)
        return self.predict_array(self.decode(payload))

    def predict_array(self, x: np.ndarray[Any, Any] | pd.DataFrame) -> Any:
        if isinstance(x, pd.DataFrame):
            return self._run({c: x[c].to_numpy() for c in x.columns})
        return self._run({self.inputs[0].name: x})

    def _run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        names = [o.name for o in self.outputs]
        try:
            results = self._session.run(names, feeds)
        except Exception as exc:  # onnxruntime raises its own types for bad feeds
            if type(exc).__name__ in ("InvalidArgument", "Fail", "InvalidGraph"):
                raise InvalidRequestError(
                    f"the ONNX model rejected the input: {exc}. Check names, shapes and "
                    "datatypes against GET /v2/models/{name}."
                ) from None
            raise
        return {n: np.asarray(r) for n, r in zip(names, results, strict=True)}
