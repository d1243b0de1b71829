"""Built-in runtimes, chosen from the files of a model version directory.

| files                         | runtime                      |
|-------------------------------|------------------------------|
| ``model.py``                  | your ``Model`` subclass      |
| ``*.onnx``                    | ONNX Runtime                 |
| ``*.ubj``, ``*.bst``, ``*.json`` (XGBoost) | XGBoost         |
| ``*.pt``, ``*.pth``            | TorchScript (``tureen[torch]``) |
| ``saved_model.pb``            | TensorFlow SavedModel (``tureen[tensorflow]``) |
| ``*.txt`` (LightGBM)          | LightGBM                     |
| ``*.joblib``, ``*.pkl``, ``*.pickle`` | scikit-learn (or any object with ``predict``) |

An optional ``model-settings.json`` (in the model or the version directory) sets
``max_batch_size``, ``max_latency_ms``, ``inline_budget_ms``, ``method`` (e.g.
``predict_proba``), and overrides the declared ``inputs`` / ``outputs`` (lists of
``{"name", "datatype", "shape"}``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tureen.errors import InvalidRequestError
from tureen.serving.inference import TensorSpec
from tureen.serving.model import Model

SETTINGS_FILE = "model-settings.json"
REGISTRY_FILE = "tureen-model.json"  # model registry metadata (tureen.models), not a model


def read_settings(*dirs: Path) -> dict[str, Any]:
    """Merged ``model-settings.json`` of the given directories (later ones win)."""
    merged: dict[str, Any] = {}
    for d in dirs:
        p = d / SETTINGS_FILE
        if p.is_file():
            try:
                data = json.loads(p.read_text())
            except ValueError as exc:
                raise InvalidRequestError(f"{p} is not valid JSON ({exc}); fix the file.") from None
            if not isinstance(data, dict):
                raise InvalidRequestError(f"{p} must hold a JSON object of settings.")
            merged.update(data)
    return merged


def _files(path: Path, *suffixes: str) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def model_from_dir(name: str, version: str, path: Path, settings: dict[str, Any]) -> Model:
    """Build (not load) the model stored in ``path``."""
    if not path.is_dir():
        raise NotADirectoryError(f"model directory {path} does not exist")
    model: Model
    if (path / "model.py").is_file():
        from tureen.serving.runtimes.custom import load_custom

        model = load_custom(name, path / "model.py", path)
    elif f := _files(path, ".onnx"):
        from tureen.serving.runtimes.onnx import ONNXModel

        model = ONNXModel(name, f[0])
    elif f := _files(path, ".ubj", ".bst") or [p for p in _files(path, ".json")
                                               if p.name not in (SETTINGS_FILE, REGISTRY_FILE)]:
        from tureen.serving.runtimes.xgb import XGBoostModel

        model = XGBoostModel(name, f[0])
    elif f := _files(path, ".pt", ".pth"):
        from tureen.serving.runtimes.torchscript import TorchScriptModel

        model = TorchScriptModel(name, f[0])
    elif (path / "saved_model.pb").is_file():
        from tureen.serving.runtimes.tensorflow import TensorFlowModel

        model = TensorFlowModel(name, path)
    elif f := _files(path, ".txt"):
        from tureen.serving.runtimes.lgbm import LightGBMModel

        model = LightGBMModel(name, f[0])
    elif f := _files(path, ".joblib", ".pkl", ".pickle"):
        from tureen.serving.runtimes.skl import SKLearnModel

        model = SKLearnModel(name, f[0], method=str(settings.get("method", "predict")))
    else:
        raise InvalidRequestError(
            f"no model file found in {path}; put a model.py, *.onnx, *.ubj/*.json (XGBoost), "
            "*.txt (LightGBM) or *.joblib/*.pkl (scikit-learn) there."
        )
    model.version = version
    apply_settings(model, settings)
    return model


def apply_settings(model: Model, settings: dict[str, Any]) -> None:
    """Set what ``settings`` name; ``apply_declared`` sets it again after ``load``, so the
    files (and a load's config override) win over what ``load()`` chose."""
    model._settings = settings  # type: ignore[attr-defined]
    _apply_scalars(model, settings)
    model._declared = {  # type: ignore[attr-defined]
        k: [TensorSpec(t["name"], t["datatype"], list(t["shape"])) for t in settings[k]]
        for k in ("inputs", "outputs") if k in settings
    }


def _apply_scalars(model: Model, settings: dict[str, Any]) -> None:
    if "max_batch_size" in settings:
        model.max_batch_size = int(settings["max_batch_size"])
    if "max_latency_ms" in settings:
        model.max_latency_ms = float(settings["max_latency_ms"])
    if "inline_budget_ms" in settings:
        model.inline_budget_ms = float(settings["inline_budget_ms"])


def apply_declared(model: Model) -> None:
    """After ``load``: settings and declared signatures override what the runtime found."""
    _apply_scalars(model, getattr(model, "_settings", {}))
    declared: dict[str, list[TensorSpec]] = getattr(model, "_declared", {})
    if "inputs" in declared:
        model.inputs = declared["inputs"]
    if "outputs" in declared:
        model.outputs = declared["outputs"]
