"""LightGBM boosters saved as text (``save_model("model.txt")``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tureen.serving.inference import TensorSpec
from tureen.serving.runtimes.base import ArrayModel


class LightGBMModel(ArrayModel):
    platform = "lightgbm"
    _booster: Any = None

    def load(self) -> bool:
        import lightgbm

        self._booster = lightgbm.Booster(model_file=str(self.path))
        self.inputs = [TensorSpec("input-0", "FP32", [-1, int(self._booster.num_feature())])]
        self.outputs = [TensorSpec("output-0", "FP64", [-1])]
        names = [str(n) for n in self._booster.feature_name()]
        # LightGBM names the columns of a model trained on arrays Column_0, Column_1, …
        anonymous = names == [f"Column_{i}" for i in range(len(names))]
        self.feature_names = [] if anonymous else names
        self.ready = True
        return True

    def unload(self) -> None:
        self._booster = None

    def run(self, x: np.ndarray[Any, Any] | pd.DataFrame) -> Any:
        return self._booster.predict(x, num_threads=1)
