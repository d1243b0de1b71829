"""``ModelVersion``: the metadata of one registered model version (``tureen-model.json``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tureen.errors import InvalidRequestError

METADATA_FILE = "tureen-model.json"
FORMAT_VERSION = 1

#: framework name -> the model files the server's runtime looks for in the version directory
FRAMEWORKS: dict[str, str] = {
    "sklearn": "*.joblib, *.pkl or *.pickle",
    "xgboost": "*.ubj, *.bst or *.json",
    "lightgbm": "*.txt",
    "onnx": "*.onnx",
    "custom": "model.py (a tureen.serving.Model subclass) and its files",
    "torchscript": "*.pt (torch.jit.save)",
    "tensorflow": "saved_model.pb and variables/ (a TensorFlow SavedModel)",
}
#: what people also type
FRAMEWORK_ALIASES = {
    "scikit-learn": "sklearn", "pytorch": "torchscript", "torch": "torchscript",
    "tf": "tensorflow", "lgbm": "lightgbm", "xgb": "xgboost", "python": "custom",
}
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name) or name.startswith("."):
        raise InvalidRequestError(
            f"model name {name!r} is not valid: use letters, digits, '_', '-' or '.', start with "
            "a letter or digit, at most 128 characters."
        )
    return name


def normalize_framework(framework: str) -> str:
    fw = FRAMEWORK_ALIASES.get(framework.lower(), framework.lower())
    if fw not in FRAMEWORKS:
        raise InvalidRequestError(
            f"framework {framework!r} is not supported; use one of {', '.join(FRAMEWORKS)}."
        )
    return fw


@dataclass(frozen=True)
class TensorSig:
    """One input or output of a model signature (Open Inference Protocol terms)."""

    name: str
    datatype: str
    shape: tuple[int, ...] = (-1,)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorSig:
        return cls(str(d["name"]), str(d["datatype"]), tuple(int(x) for x in d.get("shape", [-1])))


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    framework: str
    created_at: datetime
    uri: str = ""  # where the version directory is (path or fsspec URL)
    description: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)
    inputs: tuple[TensorSig, ...] = ()
    outputs: tuple[TensorSig, ...] = ()
    feature_service: str | None = None
    registry_version: int | None = None
    project: str | None = None
    training_set: str | None = None
    files: tuple[str, ...] = ()
    #: the pipeline run that registered it, and the data snapshot it was trained on
    pipeline_run: str | None = None
    training_snapshot: Mapping[str, Any] | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "version": self.version,
            "framework": self.framework,
            "created_at": self.created_at.isoformat(),
            "description": self.description,
            "metrics": dict(self.metrics),
            "signature": {
                "inputs": [t.to_dict() for t in self.inputs],
                "outputs": [t.to_dict() for t in self.outputs],
            },
            "lineage": {
                "project": self.project,
                "feature_service": self.feature_service,
                "registry_version": self.registry_version,
                "training_set": self.training_set,
                "pipeline_run": self.pipeline_run,
                "training_snapshot": None if self.training_snapshot is None
                else dict(self.training_snapshot),
            },
            "files": list(self.files),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], uri: str = "") -> ModelVersion:
        sig = d.get("signature", {})
        lineage = d.get("lineage", {})
        return cls(
            name=str(d["name"]),
            version=int(d["version"]),
            framework=str(d["framework"]),
            created_at=datetime.fromisoformat(d["created_at"]),
            uri=uri,
            description=str(d.get("description", "")),
            metrics={str(k): float(v) for k, v in d.get("metrics", {}).items()},
            inputs=tuple(TensorSig.from_dict(t) for t in sig.get("inputs", [])),
            outputs=tuple(TensorSig.from_dict(t) for t in sig.get("outputs", [])),
            feature_service=lineage.get("feature_service"),
            registry_version=lineage.get("registry_version"),
            project=lineage.get("project"),
            training_set=lineage.get("training_set"),
            pipeline_run=lineage.get("pipeline_run"),
            training_snapshot=lineage.get("training_snapshot"),
            files=tuple(d.get("files", [])),
        )


def parse_metrics(value: Mapping[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in (value or {}).items():
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            raise InvalidRequestError(
                f"metric {k!r} has value {v!r}, which is not a number; metrics map names to "
                "numbers, e.g. {\"auc\": 0.91}."
            ) from None
    return out
