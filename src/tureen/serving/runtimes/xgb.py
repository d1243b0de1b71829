"""XGBoost boosters saved with ``save_model`` (JSON or UBJSON)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tureen.serving.inference import TensorSpec
from tureen.serving.runtimes.base import ArrayModel


class XGBoostModel(ArrayModel):
    platform = "xgboost"
    _booster: Any = None

    def load(self) -> bool:
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(str(self.path))
        booster.set_param({"nthread": 1})
        self._booster = booster
        self.inputs = [TensorSpec("input-0", "FP32", [-1, int(booster.num_features())])]
        self.outputs = [TensorSpec("output-0", "FP32", [-1])]
        self.feature_names = [str(n) for n in booster.feature_names or ()]
        self.ready = True
        return True

    def unload(self) -> None:
        self._booster = None

    def run(self, x: np.ndarray[Any, Any] | pd.DataFrame) -> Any:
        return self._booster.inplace_predict(x)
