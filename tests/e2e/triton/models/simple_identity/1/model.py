"""Triton's ``simple_identity``: OUTPUT0 is INPUT0 (BYTES, any shape)."""

from typing import Any

from tureen.serving import Model, TensorSpec


class SimpleIdentity(Model):
    def load(self) -> bool:
        self.inputs = [TensorSpec("INPUT0", "BYTES", [-1, -1])]
        self.outputs = [TensorSpec("OUTPUT0", "BYTES", [-1, -1])]
        self.ready = True
        return True

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        return {"OUTPUT0": payload.input("INPUT0").data}
