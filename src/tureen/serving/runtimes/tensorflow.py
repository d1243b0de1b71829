"""TensorFlow SavedModel (``saved_model.pb`` + ``variables/``); needs ``tureen[tensorflow]``.

Calls the ``serving_default`` signature. A signature with one input takes the request's one
tensor (or the columns of a table stacked as rows x features); with several inputs, the
request's inputs are matched by name. Outputs keep the signature's output names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tureen.errors import ConfigError, InvalidRequestError
from tureen.serving.inference import InferRequest, TensorSpec
from tureen.serving.model import Headers
from tureen.serving.runtimes.base import ArrayModel

_TF_OIP = {
    "float32": "FP32", "float64": "FP64", "float16": "FP16", "int8": "INT8", "int16": "INT16",
    "int32": "INT32", "int64": "INT64", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32",
    "uint64": "UINT64", "bool": "BOOL", "string": "BYTES",
}


def _shape(dims: Any) -> list[int]:
    return [-1 if d is None else int(d) for d in dims]


class TensorFlowModel(ArrayModel):
    platform = "tensorflow_savedmodel"

    def __init__(self, name: str, path: Path) -> None:
        super().__init__(name, path)
        self._fn: Any = None
        self._tf: Any = None
        self._in_dtypes: dict[str, Any] = {}

    def load(self) -> bool:
        try:
            import tensorflow as tf
        except ImportError as exc:
            raise ConfigError(
                f"{self.path} is a TensorFlow SavedModel but tensorflow is not installed: "
                "pip install 'tureen[tensorflow]'."
            ) from exc
        self._tf = tf
        loaded = tf.saved_model.load(str(self.path))
        sigs = loaded.signatures
        if "serving_default" not in sigs:
            raise InvalidRequestError(
                f"{self.path} has no 'serving_default' signature (it has {list(sigs)}); save "
                "the model with signatures={'serving_default': ...}."
            )
        self._loaded = loaded  # keeps the variables alive
        self._fn = sigs["serving_default"]
        _, kwargs = self._fn.structured_input_signature
        self._in_dtypes = {k: spec.dtype for k, spec in kwargs.items()}
        self.inputs = [
            TensorSpec(k, _TF_OIP.get(spec.dtype.name, "BYTES"), _shape(spec.shape))
            for k, spec in kwargs.items()
        ]
        self.outputs = [
            TensorSpec(k, _TF_OIP.get(spec.dtype.name, "BYTES"), _shape(spec.shape))
            for k, spec in self._fn.structured_outputs.items()
        ]
        self.ready = True
        return True

    def unload(self) -> None:
        self._fn = self._tf = self._loaded = None

    def predict(self, payload: Any, headers: Headers | None = None) -> Any:
        if isinstance(payload, InferRequest) and len(payload.inputs) > 1:
            return self._run({i.name: i.data for i in payload.inputs})
        return self.predict_array(self.decode(payload))

    def predict_array(self, x: np.ndarray[Any, Any] | pd.DataFrame) -> Any:
        names = list(self._in_dtypes)
        if isinstance(x, pd.DataFrame):
            if len(names) > 1:
                return self._run({c: x[c].to_numpy() for c in x.columns})
            x = x.to_numpy()
        return self._run({names[0]: x})

    def _run(self, feeds: dict[str, Any]) -> Any:
        tf = self._tf
        missing = set(self._in_dtypes) - set(feeds)
        if missing:
            raise InvalidRequestError(
                f"the TensorFlow model needs inputs {sorted(self._in_dtypes)}; missing "
                f"{sorted(missing)}."
            )
        tensors = {k: tf.constant(np.asarray(feeds[k]), dtype=d)
                   for k, d in self._in_dtypes.items()}
        try:
            out = self._fn(**tensors)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            raise InvalidRequestError(
                f"the TensorFlow model rejected the input: {str(exc).splitlines()[0]}."
            ) from None
        result = {k: v.numpy() for k, v in out.items()}
        return result if len(result) > 1 else next(iter(result.values()))
