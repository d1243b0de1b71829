"""Triton's ``simple``: OUTPUT0 = INPUT0 + INPUT1 and OUTPUT1 = INPUT0 - INPUT1, 16 INT32s a row."""

from typing import Any

from tureen.serving import Model, TensorSpec


class Simple(Model):
    dtype = "INT32"

    def load(self) -> bool:
        self.inputs = [TensorSpec(n, self.dtype, [-1, 16]) for n in ("INPUT0", "INPUT1")]
        self.outputs = [TensorSpec(n, self.dtype, [-1, 16]) for n in ("OUTPUT0", "OUTPUT1")]
        self.max_batch_size = 8
        self.ready = True
        return True

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        a, b = payload.input("INPUT0").data, payload.input("INPUT1").data
        return {"OUTPUT0": a + b, "OUTPUT1": a - b}
