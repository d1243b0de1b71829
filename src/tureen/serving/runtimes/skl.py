"""scikit-learn (or any joblib/pickle object with ``predict``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from tureen.errors import InvalidRequestError
from tureen.serving.inference import TensorSpec
from tureen.serving.runtimes.base import ArrayModel
from tureen.types import oip_datatype_of


class SKLearnModel(ArrayModel):
    platform = "sklearn"

    def __init__(self, name: str, path: Path, method: str = "predict") -> None:
        super().__init__(name, path)
        self.method = method
        self._estimator: Any = None
        self._fn: Any = None

    def load(self) -> bool:
        self._estimator = joblib.load(self.path)
        self._fn = getattr(self._estimator, self.method, None)
        if self._fn is None:
            raise InvalidRequestError(
                f"{self.path} holds a {type(self._estimator).__name__} without method "
                f"{self.method!r}; set 'method' in model-settings.json to one it has."
            )
        n = getattr(self._estimator, "n_features_in_", None)
        self.inputs = [TensorSpec("input-0", "FP32", [-1, int(n) if n else -1])]
        names = getattr(self._estimator, "feature_names_in_", None)
        self.feature_names = [str(c) for c in names] if names is not None else []
        self.outputs = [sklearn_output(self._estimator, self.method)]
        self.ready = True
        return True

    def unload(self) -> None:
        self._estimator = self._fn = None

    def run(self, x: np.ndarray[Any, Any] | pd.DataFrame) -> Any:
        if isinstance(x, pd.DataFrame) and not hasattr(self._estimator, "feature_names_in_"):
            x = x.to_numpy()  # fitted on arrays: columns are taken in request order
        return self._fn(x)


def sklearn_output(estimator: Any, method: str) -> TensorSpec:
    """What ``method`` of a fitted estimator returns: labels in the classes' dtype (predict),
    or one column per class (predict_proba, predict_log_proba, multi-class
    decision_function); the model registry records exactly this signature."""
    classes = getattr(estimator, "classes_", None)
    n = len(classes) if isinstance(classes, np.ndarray) else -1
    if method == "predict":
        dt = oip_datatype_of(classes) if isinstance(classes, np.ndarray) else "FP64"
        return TensorSpec("output-0", dt, [-1])
    if method == "decision_function" and n == 2:
        return TensorSpec("output-0", "FP64", [-1])
    return TensorSpec("output-0", "FP64", [-1, n])
