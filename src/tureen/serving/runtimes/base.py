"""``ArrayModel``: the shape shared by built-in runtimes (one array or table in, arrays out)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tureen.errors import InvalidRequestError
from tureen.serving.model import Headers, Model


class ArrayModel(Model):
    """Rows in, rows out: ``predict_array`` is row-independent, so the data plane batches
    concurrent requests at the array level (adaptive, ``max_batch_size`` 64 by default; set 0
    in model-settings.json to turn it off). A predict that stays under ``inline_budget_ms``
    (1 ms by default) runs on the event loop: a thread hop would cost more than the work."""

    def __init__(self, name: str, path: Path) -> None:
        super().__init__(name)
        self.path = path
        self.max_batch_size = 64
        self.inline_budget_ms = 1.0

    def predict(self, payload: Any, headers: Headers | None = None) -> Any:
        return self.predict_array(self.decode(payload))

    def predict_array(self, x: np.ndarray[Any, Any] | pd.DataFrame) -> Any:
        """Rows in, one result per row out; input errors raise InvalidRequestError."""
        try:
            return self.run(x)
        except (ValueError, TypeError) as exc:  # what the libraries raise for bad input
            raise InvalidRequestError(
                f"model {self.name!r} rejected the input: {exc}. Check it against "
                f"GET /v2/models/{self.name}."
            ) from None

    def run(self, x: np.ndarray[Any, Any] | pd.DataFrame) -> Any:
        """The library call (override in each runtime)."""
        raise NotImplementedError
