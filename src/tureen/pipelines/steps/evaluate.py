"""Evaluate step: score a saved model on held-out rows, through tureen's serving runtime.

The model is loaded and called exactly as ``tureen serve`` will (same runtime, same
``model-settings.json``), so the metrics describe the served model, not a twin of it.

Classification gives ``auc`` (binary), ``accuracy``, ``precision``, ``recall``, ``f1``,
``log_loss`` (binary), a confusion matrix and a ROC curve in the shape Kubeflow's
``ClassificationMetrics`` takes (at most ``MAX_ROC_POINTS`` points, finite thresholds);
regression gives ``rmse``, ``mae``, ``r2``. ``test_rows`` is always there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tureen.errors import InvalidRequestError
from tureen.pipelines.steps.train import feature_matrix

MAX_ROC_POINTS = 200


@dataclass
class Evaluation:
    metrics: dict[str, float]
    labels: list[str] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)
    fpr: list[float] = field(default_factory=list)
    tpr: list[float] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)


def predict(model_dir: str, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    from tureen.serving.runtimes import model_from_dir, read_settings

    path = Path(model_dir)
    model = model_from_dir("evaluate", "1", path, read_settings(path))
    model.load()
    try:
        out = model.predict_array(x)  # type: ignore[attr-defined]
    finally:
        model.unload()
    return np.asarray(out)


def _roc(y: np.ndarray[Any, Any], score: np.ndarray[Any, Any]
         ) -> tuple[list[float], list[float], list[float]]:
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(y, score)
    thr = np.where(np.isfinite(thr), thr, 1.0).clip(0.0, 1.0)
    if len(fpr) > MAX_ROC_POINTS:
        keep = np.unique(np.linspace(0, len(fpr) - 1, MAX_ROC_POINTS).round().astype(int))
        fpr, tpr, thr = fpr[keep], tpr[keep], thr[keep]
    return ([round(float(v), 6) for v in fpr], [round(float(v), 6) for v in tpr],
            [round(float(v), 6) for v in thr])


def _classification(y_raw: np.ndarray[Any, Any], out: np.ndarray[Any, Any],
                    threshold: float) -> Evaluation:
    from sklearn import metrics as m

    classes = sorted(pd.unique(y_raw).tolist(), key=str)
    binary = len(classes) <= 2
    score: np.ndarray[Any, Any] | None = None
    if out.ndim == 2 and out.shape[1] > 2:
        pred_idx = out.argmax(axis=1)
    else:
        score = (out[:, 1] if out.shape[1] == 2 else out[:, 0]) if out.ndim == 2 \
            else out.astype(np.float64).ravel()
        pred_idx = (np.asarray(score) >= threshold).astype(int)
    if not binary and out.ndim == 1:
        raise InvalidRequestError(f"the label has {len(classes)} classes but the model returns "
                                  "one score per row; evaluate needs class probabilities.")
    labels = [str(c) for c in classes] if len(classes) > 1 else ["False", "True"]
    if binary:
        positive = classes[-1] if len(classes) == 2 else True
        y = (y_raw == positive).astype(int)
    else:
        y = np.array([classes.index(v) for v in y_raw])
    k = max(2, len(classes))
    cm = m.confusion_matrix(y, pred_idx, labels=list(range(k)))
    avg = "binary" if binary else "macro"
    metrics = {
        "accuracy": float(m.accuracy_score(y, pred_idx)),
        "precision": float(m.precision_score(y, pred_idx, average=avg, zero_division=0)),
        "recall": float(m.recall_score(y, pred_idx, average=avg, zero_division=0)),
        "f1": float(m.f1_score(y, pred_idx, average=avg, zero_division=0)),
    }
    ev = Evaluation(metrics, labels, cm.astype(int).tolist())
    if binary and score is not None and len(set(y.tolist())) == 2:
        metrics["auc"] = float(m.roc_auc_score(y, score))
        metrics["log_loss"] = float(m.log_loss(y, np.clip(score, 1e-15, 1 - 1e-15),
                                               labels=[0, 1]))
        ev.fpr, ev.tpr, ev.thresholds = _roc(y, score)
    return ev


def evaluate(model_dir: str, test_set: str, *, label: str, features: Sequence[str],
             task: str = "classification", threshold: float = 0.5) -> Evaluation:
    frame = pd.read_parquet(test_set)
    if label not in frame.columns:
        raise InvalidRequestError(f"label column {label!r} is not in the test set.")
    frame = frame[frame[label].notna()]
    if frame.empty:
        raise InvalidRequestError("the test set has no labelled rows to evaluate on.")
    out = predict(model_dir, feature_matrix(frame, features))
    y_raw = frame[label].to_numpy()
    if task == "regression":
        from sklearn import metrics as m

        pred = out.astype(np.float64).ravel()
        y = y_raw.astype(np.float64)
        ev = Evaluation({"rmse": math.sqrt(float(m.mean_squared_error(y, pred))),
                         "mae": float(m.mean_absolute_error(y, pred)),
                         "r2": float(m.r2_score(y, pred))})
    else:
        ev = _classification(y_raw, out, threshold)
    ev.metrics["test_rows"] = float(len(frame))
    ev.metrics = {k: round(v, 6) for k, v in ev.metrics.items()}
    return ev
