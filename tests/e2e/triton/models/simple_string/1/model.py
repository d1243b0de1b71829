"""Triton's ``simple_string``: like ``simple`` on BYTES holding decimal integers."""

from typing import Any

import numpy as np

from tureen.errors import InvalidRequestError
from tureen.serving import Model, TensorSpec


def _ints(name: str, arr: Any) -> Any:
    try:
        return np.vectorize(lambda v: int(v.decode() if isinstance(v, bytes) else v),
                            otypes=[np.int64])(arr)
    except ValueError:
        raise InvalidRequestError(f"{name} must hold decimal integers as strings") from None


def _strings(arr: Any) -> Any:
    return np.vectorize(lambda v: str(v).encode(), otypes=[object])(arr)


class SimpleString(Model):
    def load(self) -> bool:
        self.inputs = [TensorSpec(n, "BYTES", [-1, 16]) for n in ("INPUT0", "INPUT1")]
        self.outputs = [TensorSpec(n, "BYTES", [-1, 16]) for n in ("OUTPUT0", "OUTPUT1")]
        self.max_batch_size = 8
        self.ready = True
        return True

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        a = _ints("INPUT0", payload.input("INPUT0").data)
        b = _ints("INPUT1", payload.input("INPUT1").data)
        return {"OUTPUT0": _strings(a + b), "OUTPUT1": _strings(a - b)}
