"""TorchScript models (``torch.jit.save``) on the CPU; needs ``pip install 'tureen[torch]'``.

The module's ``forward`` takes one float tensor (rows x features) or, for OIP requests with
several inputs, one tensor per input in request order. Outputs: one tensor, or a tuple/dict.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tureen.errors import ConfigError, InvalidRequestError
from tureen.serving.inference import InferRequest, TensorSpec
from tureen.serving.model import Headers
from tureen.serving.runtimes.base import ArrayModel
from tureen.types import oip_datatype_of


class TorchScriptModel(ArrayModel):
    platform = "pytorch_libtorch"

    def __init__(self, name: str, path: Path) -> None:
        super().__init__(name, path)
        self._module: Any = None
        self._torch: Any = None

    def load(self) -> bool:
        try:
            import torch
        except ImportError as exc:
            raise ConfigError(
                f"{self.path} is a TorchScript model but torch is not installed: "
                "pip install 'tureen[torch]'."
            ) from exc
        torch.set_num_threads(1)
        self._torch = torch
        with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; it still loads
            warnings.simplefilter("ignore", DeprecationWarning)
            self._module = torch.jit.load(  # type: ignore[no-untyped-call, unused-ignore]
                str(self.path), map_location="cpu"
            )
        self._module.eval()
        if not self.inputs:
            self.inputs = [TensorSpec("input-0", "FP32", [-1, -1])]
        self.ready = True
        return True

    def unload(self) -> None:
        self._module = self._torch = None

    def predict(self, payload: Any, headers: Headers | None = None) -> Any:
        if isinstance(payload, InferRequest) and len(payload.inputs) > 1:
            return self._run(*(i.data for i in payload.inputs))
        return self.predict_array(self.decode(payload))

    def predict_array(self, x: np.ndarray[Any, Any] | pd.DataFrame) -> Any:
        if isinstance(x, pd.DataFrame):
            x = x.to_numpy(dtype=np.float32)
        return self._run(x)

    def _run(self, *arrays: np.ndarray[Any, Any]) -> Any:
        torch = self._torch
        tensors = [
            torch.from_numpy(np.ascontiguousarray(
                a.astype(np.float32) if a.dtype.kind in "fiub" and a.dtype != np.float32 else a
            ))
            for a in arrays
        ]
        try:
            with torch.inference_mode():
                out = self._module(*tensors)
        except RuntimeError as exc:
            raise InvalidRequestError(
                f"the TorchScript model rejected the input: {str(exc).splitlines()[0]}. Check "
                "shapes and datatypes against GET /v2/models/{name}."
            ) from None
        if isinstance(out, dict):
            result = {str(k): v.numpy() for k, v in out.items()}
        elif isinstance(out, tuple | list):
            result = {f"output-{i}": v.numpy() for i, v in enumerate(out)}
        else:
            result = {"output-0": out.numpy()}
        if not self.outputs:
            self.outputs = [TensorSpec(k, oip_datatype_of(v), [-1, *v.shape[1:]])
                            for k, v in result.items()]
        return result if len(result) > 1 else next(iter(result.values()))
