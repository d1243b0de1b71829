"""Triton's ``repeat_int32`` (a decoupled model): one response per element of IN, each
after DELAY[i] milliseconds, holding OUT = IN[i] and IDX = i; then WAIT milliseconds before
the request is released."""

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from tureen.errors import InvalidRequestError
from tureen.serving import Model, TensorSpec


class Repeat(Model):
    def load(self) -> bool:
        self.inputs = [TensorSpec("IN", "INT32", [-1]), TensorSpec("DELAY", "UINT32", [-1]),
                       TensorSpec("WAIT", "UINT32", [1])]
        self.outputs = [TensorSpec("OUT", "INT32", [1]), TensorSpec("IDX", "UINT32", [1])]
        self.ready = True
        return True

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Iterator[Any]:
        values = payload.input("IN").data
        delays = payload.input("DELAY").data
        if delays.shape != values.shape:
            raise InvalidRequestError("DELAY needs one delay (ms) per element of IN")
        for i, value in enumerate(values):
            time.sleep(float(delays[i]) / 1000.0)
            yield {"OUT": np.array([value], dtype=np.int32),
                   "IDX": np.array([i], dtype=np.uint32)}
        time.sleep(float(payload.input("WAIT").data[0]) / 1000.0)
