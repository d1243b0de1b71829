"""What one served request leaves in the inference log.

``InferenceRecord`` is what a server hands to ``InferenceLogger.log``: cheap to build (it only
holds references; nothing is copied or converted on the request path). The logger's background
thread turns it into a ``LoggedRequest`` (plain columns of Python values, one entry per row
the model saw) with the deployment's logging mode applied, and hands those to the sink.

The caller must not mutate the objects it logged (arrays, frames, dicts) after ``log``.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from tureen.errors import InvalidRequestError
from tureen.serving.inference import InferRequest, InferResponse

#: column name → values: a list of Python values, or a 1-D numeric numpy array (kept as an
#: array so numeric columns reach Parquet without a per-value Python conversion)
Columns = dict[str, Any]


class LogMode(enum.Enum):
    """What is logged: everything, only the model's inputs, only predictions, or nothing.

    Request id, deployment, model, version, timestamp and entity keys are always kept.
    """

    ALL = "ALL"
    MODEL_INPUTS = "MODEL_INPUTS"
    PREDICTIONS = "PREDICTIONS"
    NONE = "NONE"

    @classmethod
    def parse(cls, value: str | LogMode) -> LogMode:
        if isinstance(value, LogMode):
            return value
        try:
            return cls(value.upper().replace("-", "_"))
        except ValueError:
            raise InvalidRequestError(
                f"logging mode {value!r} is not one of ALL, MODEL_INPUTS, PREDICTIONS, NONE."
            ) from None

    @property
    def inputs(self) -> bool:
        return self in (LogMode.ALL, LogMode.MODEL_INPUTS)

    @property
    def predictions(self) -> bool:
        return self in (LogMode.ALL, LogMode.PREDICTIONS)


@dataclass(slots=True)
class InferenceRecord:
    request_id: str
    deployment: str
    model_name: str
    model_version: str
    #: the features exactly as fed to the model: a mapping name → values, a DataFrame, an
    #: array (columns named by ``input_names``), an OIP ``InferRequest`` or a v1 body
    inputs: Any = None
    #: predictions: an array, a mapping name → array, an ``InferResponse`` or a v1 body
    outputs: Any = None
    #: entity keys of each row, name → values (the request's entity rows)
    entities: Mapping[str, Sequence[Any]] | None = None
    input_names: Sequence[str] | None = None
    #: seconds since the epoch (``time.time()``)
    timestamp: float = field(default_factory=time.time)
    #: computes ``entities`` later, on the logger's thread (keeps parsing off the request path)
    entities_fn: Callable[[], Mapping[str, Sequence[Any]]] | None = None
    #: when set, only these of the entity columns are entity keys; the others are request
    #: fields (request-time data such as an amount) and are logged as ``request_fields``
    entity_keys: Sequence[str] | None = None
    #: feature name -> its schema's numpy dtype: a model fed one float matrix still logs
    #: int and bool features as int and bool (values that do not fit stay as they were)
    input_types: Mapping[str, np.dtype[Any]] | None = None


@dataclass(frozen=True)
class LoggedRequest:
    """A record after normalization: columns of plain Python values, mode applied."""

    request_id: str
    deployment: str
    model_name: str
    model_version: str
    timestamp: datetime
    rows: int
    entities: Columns
    features: Columns
    predictions: Columns
    request_fields: Columns = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "deployment": self.deployment,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "timestamp": self.timestamp.isoformat(),
            "entities": as_lists(self.entities),
            "request_fields": as_lists(self.request_fields),
            "features": as_lists(self.features),
            "predictions": as_lists(self.predictions),
        }


def as_lists(cols: Columns) -> dict[str, list[Any]]:
    """The columns with every value a plain Python list (for JSON)."""
    return {k: v.tolist() if isinstance(v, np.ndarray) else list(v) for k, v in cols.items()}


def normalize(record: InferenceRecord, mode: LogMode) -> LoggedRequest:
    raw = record.entities
    if raw is None and record.entities_fn is not None:
        raw = record.entities_fn()
    entities = {k: _values(v) for k, v in (raw or {}).items()}
    request_fields: Columns = {}
    if record.entity_keys is not None:
        keys = set(record.entity_keys)
        request_fields = {k: v for k, v in entities.items() if k not in keys}
        entities = {k: v for k, v in entities.items() if k in keys}
    features = _columns(record.inputs, record.input_names, "input") if mode.inputs else {}
    if record.input_types and features:
        features = {k: _retyped(v, record.input_types.get(k)) for k, v in features.items()}
    predictions = _columns(record.outputs, None, "output") if mode.predictions else {}
    rows = next((len(v) for c in (features, predictions, entities) for v in c.values()), 0)
    return LoggedRequest(
        request_id=record.request_id,
        deployment=record.deployment,
        model_name=record.model_name,
        model_version=str(record.model_version),
        timestamp=datetime.fromtimestamp(record.timestamp, UTC),
        rows=rows,
        entities=entities,
        features=features,
        predictions=predictions,
        request_fields=request_fields,
    )


def _values(v: Any) -> Any:
    """One column's values: a 1-D numeric array as is, anything else as a Python list."""
    if isinstance(v, np.ndarray):
        if v.ndim == 2 and v.shape[1] == 1:
            v = v[:, 0]
        if v.dtype.kind in "biuf":
            if v.ndim == 1:
                return v
            return v.tolist() if v.ndim else [v.item()]
        if v.ndim > 1:
            return [_py(r) for r in v.tolist()]
        if v.dtype.kind == "M":
            return [pd.Timestamp(x).to_pydatetime() for x in v]
        return [_py(x) for x in v.tolist()]
    if isinstance(v, pd.Series):
        return _values(v.to_numpy())
    if isinstance(v, list | tuple):
        return [_py(x) for x in v]
    return [_py(v)]


def _retyped(values: Any, dtype: np.dtype[Any] | None) -> Any:
    """A float column back in its schema dtype (int, bool) when every value fits; missing
    values (NaN) become None."""
    if dtype is None or dtype.kind not in "biu" or not isinstance(values, np.ndarray) \
            or values.dtype.kind != "f":
        return values
    nan = np.isnan(values)
    if dtype.kind == "b":
        if not np.isin(values[~nan], (0.0, 1.0)).all():
            return values
    elif not np.array_equal(values[~nan], np.round(values[~nan])):
        return values
    if not nan.any():
        return values.astype(dtype)
    out: list[Any] = values.astype(dtype if dtype.kind == "b" else np.int64).tolist()
    return [None if m else v for v, m in zip(out, nan.tolist(), strict=True)]


def _py(x: Any) -> Any:
    if isinstance(x, bytes):
        try:
            return x.decode()
        except UnicodeDecodeError:
            return x
    if isinstance(x, np.generic):
        return x.item()
    return x


def _columns(obj: Any, names: Sequence[str] | None, prefix: str) -> Columns:
    if obj is None:
        return {}
    if isinstance(obj, np.ndarray):
        return _array_columns(obj, names, prefix)
    if isinstance(obj, InferRequest):
        return {i.name: _values(i.data) for i in obj.inputs}
    if isinstance(obj, InferResponse):
        return {o.name: _values(o.data) for o in obj.outputs}
    if isinstance(obj, pd.DataFrame):
        return {str(c): _values(obj[c].to_numpy()) for c in obj.columns}
    if isinstance(obj, Mapping):
        if "predictions" in obj and len(obj) <= 2:  # a v1 response body
            return _columns(obj["predictions"], None, "output")
        if "instances" in obj or "inputs" in obj:  # a v1 request body
            return _columns(obj.get("instances", obj.get("inputs")), names, prefix)
        return {str(k): _values(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple) and obj and isinstance(obj[0], Mapping):
        keys = list(obj[0])
        return {str(k): [_py(r.get(k)) for r in obj] for k in keys}
    return _array_columns(np.asarray(obj), names, prefix)


def _array_columns(arr: np.ndarray[Any, Any], names: Sequence[str] | None,
                   prefix: str) -> Columns:
    if arr.ndim == 2 and arr.shape[1] > 1 and (names is not None or prefix == "input"):
        cols = list(names) if names is not None else [f"{prefix}_{j}" for j in range(arr.shape[1])]
        return {c: _values(arr[:, j]) for j, c in enumerate(cols)}
    key = names[0] if names else ("predictions" if prefix == "output" else f"{prefix}-0")
    return {key: _values(arr)}
