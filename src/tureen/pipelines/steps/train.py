"""Train step: fit an estimator on a training set and save it in a servable layout.

``estimator`` is a shorthand (``logistic_regression``, ``random_forest``,
``gradient_boosting``, ``xgboost``, ``lightgbm``) or an import path of any scikit-learn
compatible class (``sklearn.svm.SVC``, ``xgboost.XGBRegressor``); ``params`` go to its
constructor. ``function`` (``"pipelines/my_model.py:fit"`` or ``"package.module:fit"``)
replaces it with your own ``fit(X, y, params) -> estimator``.

Rows are split before fitting — by time (the last ``test_size`` of the rows by timestamp,
the honest split for data that arrives over time) or at random with a seed — and the held-out
rows are written for the evaluate step. The model is saved the way tureen serves it:
scikit-learn as ``model.joblib`` (missing values imputed inside the pipeline, probabilities
served with ``method: predict_proba``), XGBoost as ``model.ubj``, LightGBM as ``model.txt``.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tureen.errors import InvalidRequestError, NotFoundError, suggest
from tureen.pipelines.steps.repo import repo_path
from tureen.user_code import import_file

ESTIMATORS = {
    "logistic_regression": "sklearn.linear_model.LogisticRegression",
    "random_forest": "sklearn.ensemble.RandomForestClassifier",
    "gradient_boosting": "sklearn.ensemble.HistGradientBoostingClassifier",
    "xgboost": "xgboost.XGBClassifier",
    "lightgbm": "lightgbm.LGBMClassifier",
}
SPLITS = ("time", "random")


def _import_object(ref: str, repo: Path, what: str) -> Any:
    module_ref, sep, attr = ref.rpartition(":") if ":" in ref else ref.rpartition(".")
    if not sep or not attr or not module_ref:
        raise InvalidRequestError(f"{what} {ref!r}: write package.module:name or "
                                  "path/to/file.py:name.")
    try:
        if module_ref.endswith(".py"):
            p = Path(module_ref)
            module = import_file(p if p.is_absolute() else repo / p, "_tureen_train_")
        else:
            module = importlib.import_module(module_ref)
    except ModuleNotFoundError as exc:
        raise InvalidRequestError(f"{what} {ref!r}: module {exc.name!r} is not installed.") \
            from None
    except FileNotFoundError:
        raise NotFoundError(f"{what} {ref!r}: no such file.") from None
    if not hasattr(module, attr):
        raise NotFoundError(f"{what} {ref!r}: {module_ref} has no {attr!r}."
                            f"{suggest(attr, dir(module))}")
    return getattr(module, attr)


def framework_of(model: Any) -> str:
    root = type(model).__module__.split(".")[0]
    return {"xgboost": "xgboost", "lightgbm": "lightgbm"}.get(root, "sklearn")


def feature_matrix(frame: pd.DataFrame, features: Sequence[str]) -> np.ndarray[Any, Any]:
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise InvalidRequestError(f"the training set has no column(s) {missing}; its columns: "
                                  f"{list(frame.columns)}.")
    x = frame[list(features)].astype("float64")
    return x.to_numpy(dtype=np.float64, na_value=np.nan)


def split(frame: pd.DataFrame, test_size: float, how: str, timestamp_column: str,
          seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    if not 0 < test_size < 1:
        raise InvalidRequestError(f"test_size {test_size} must be between 0 and 1.")
    if how not in SPLITS:
        raise InvalidRequestError(f"split {how!r}: use one of {SPLITS}.")
    if how == "time":
        if timestamp_column not in frame.columns:
            raise InvalidRequestError(f"split='time' needs column {timestamp_column!r}; set "
                                      "timestamp_column or split='random'.")
        frame = frame.sort_values(timestamp_column, kind="stable")
    else:
        frame = frame.sample(frac=1.0, random_state=seed)
    cut = round(len(frame) * (1 - test_size))
    if cut < 1 or cut >= len(frame):
        raise InvalidRequestError(f"{len(frame)} rows cannot be split with test_size "
                                  f"{test_size}: both sides need rows.")
    return frame.iloc[:cut], frame.iloc[cut:]


def _estimator(estimator: str, params: Mapping[str, Any], repo: Path) -> Any:
    cls = _import_object(ESTIMATORS.get(estimator, estimator), repo, "estimator")
    try:
        return cls(**dict(params))
    except TypeError as exc:
        raise InvalidRequestError(f"estimator {estimator!r} rejects params {dict(params)}: "
                                  f"{exc}") from None


def save(model: Any, model_dir: Path) -> str:
    model_dir.mkdir(parents=True, exist_ok=True)
    fw = framework_of(model)
    if fw == "xgboost":
        model.save_model(str(model_dir / "model.ubj"))
    elif fw == "lightgbm":
        booster = getattr(model, "booster_", model)
        booster.save_model(str(model_dir / "model.txt"))
    else:
        import joblib

        joblib.dump(model, model_dir / "model.joblib")
        if hasattr(model, "predict_proba"):
            (model_dir / "model-settings.json").write_text(
                json.dumps({"method": "predict_proba"}))
    return fw


def train(training_set: str, model_dir: str, test_set: str, *, label: str,
          features: Sequence[str] | None = None, estimator: str = "gradient_boosting",
          params: Mapping[str, Any] | None = None, function: str = "", test_size: float = 0.2,
          how: str = "time", timestamp_column: str = "event_timestamp", seed: int = 0,
          repo: str = "") -> dict[str, Any]:
    """Fit, save the model into ``model_dir`` and the held-out rows to ``test_set``;
    returns the model artifact's metadata."""
    root = repo_path(repo)
    frame = pd.read_parquet(training_set)
    if label not in frame.columns:
        raise InvalidRequestError(f"label column {label!r} is not in the training set."
                                  f"{suggest(label, frame.columns)} Columns: "
                                  f"{list(frame.columns)}.")
    frame = frame[frame[label].notna()]
    feats = list(features) if features else [
        c for c in frame.columns if c not in (label, timestamp_column)
        and (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))]
    train_rows, test_rows = split(frame, test_size, how, timestamp_column, seed)
    x, y = feature_matrix(train_rows, feats), train_rows[label].to_numpy()
    args = dict(params or {})
    sys.path.insert(0, str(root))
    try:
        if function:
            fit = _import_object(function, root, "function")
            model = fit(x, y, args)
            if model is None or not hasattr(model, "predict"):
                raise InvalidRequestError(f"function {function!r} must return a fitted model "
                                          "with predict(); it returned "
                                          f"{type(model).__name__}.")
        else:
            model = _estimator(estimator, args, root)
            if framework_of(model) == "sklearn":
                from sklearn.impute import SimpleImputer
                from sklearn.pipeline import make_pipeline

                model = make_pipeline(SimpleImputer(strategy="median",
                                                    keep_empty_features=True), model)
            model.fit(x, y)
    finally:
        sys.path.remove(str(root))
    fw = save(model, Path(model_dir))
    Path(test_set).parent.mkdir(parents=True, exist_ok=True)
    test_rows.to_parquet(test_set, index=False)
    from sklearn.base import is_classifier

    kind = "classification" if is_classifier(model) or hasattr(model, "predict_proba") \
        else "regression"
    return {"framework": fw, "estimator": function or ESTIMATORS.get(estimator, estimator),
            "params": args, "features": feats, "label": label, "task": kind,
            "train_rows": len(train_rows), "test_rows": len(test_rows), "split": how}
