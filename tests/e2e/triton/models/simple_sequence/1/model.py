"""Triton's ``simple_sequence`` (a stateful model): OUTPUT is INPUT, plus one on the request
that starts a sequence. Requests of a sequence that was never started, or that already ended,
are refused; the sequence id may be an integer or a string."""

import asyncio
from typing import Any

from tureen.errors import InvalidRequestError
from tureen.serving import Model, TensorSpec


class SimpleSequence(Model):
    def load(self) -> bool:
        self.inputs = [TensorSpec("INPUT", "INT32", [-1, 1])]
        self.outputs = [TensorSpec("OUTPUT", "INT32", [-1, 1])]
        self.open: set[Any] = set()
        self.lock = asyncio.Lock()
        self.ready = True
        return True

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        params = payload.parameters
        sid = params.get("sequence_id")
        if sid in (None, 0, ""):
            raise InvalidRequestError("simple_sequence needs a sequence_id on every request")
        async with self.lock:
            if params.get("sequence_start"):
                self.open.add(sid)
            elif sid not in self.open:
                raise InvalidRequestError(f"sequence {sid!r} was not started (or has ended)")
            if params.get("sequence_end"):
                self.open.discard(sid)
        data = payload.input("INPUT").data
        return {"OUTPUT": data + 1 if params.get("sequence_start") else data.copy()}
