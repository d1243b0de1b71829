"""OnlineResponse: the features of ``get_online_features``, in requested order.

Join keys come first (as in Feast's responses), then each feature under its output name.
Per value: a status (PRESENT / NULL_VALUE / NOT_FOUND / OUTSIDE_MAX_AGE) and the event
timestamp of the stored row. Statuses and timestamps are derived lazily from per-row data
so the hot path does not pay for views nobody inspects.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from tureen.definitions import Field
from tureen.online.encoding import micros_to_datetime


class FieldStatus(StrEnum):
    PRESENT = "PRESENT"
    NULL_VALUE = "NULL_VALUE"
    NOT_FOUND = "NOT_FOUND"
    OUTSIDE_MAX_AGE = "OUTSIDE_MAX_AGE"


PRESENT = FieldStatus.PRESENT
NULL_VALUE = FieldStatus.NULL_VALUE
NOT_FOUND = FieldStatus.NOT_FOUND
OUTSIDE_MAX_AGE = FieldStatus.OUTSIDE_MAX_AGE

_EPOCH_JSON = "1970-01-01T00:00:00Z"
_STATUS_TEXT: dict[FieldStatus, str] = {s: s.value for s in FieldStatus}


_EPOCH_NAIVE = datetime(1970, 1, 1)
#: recent event times already formatted (rows of one entity are read again and again)
_STAMP_CACHE: dict[int | None, str] = {}


def _rfc3339_many(micros: Sequence[int | None]) -> list[str]:
    """``_rfc3339`` of many timestamps at once (numpy formats, Python only trims)."""
    if not micros:
        return []
    if len(micros) <= 4:  # numpy's per-call overhead dominates for a few rows
        cache = _STAMP_CACHE
        if len(cache) > 65_536:
            cache.clear()
        out: list[str] = []
        for us in micros:
            text = cache.get(us)
            if text is None:
                text = cache[us] = _rfc3339(us)
            out.append(text)
        return out
    filled = [0 if us is None else us for us in micros]
    text = np.datetime_as_string(np.array(filled, dtype="datetime64[us]"), unit="us").tolist()
    out = [
        t[:19] + "Z" if us % 1_000_000 == 0 else t[:23] + "Z" if us % 1000 == 0 else t + "Z"
        for t, us in zip(text, filled, strict=True)
    ]
    if None in micros:
        out = [_EPOCH_JSON if us is None else t for t, us in zip(out, micros, strict=True)]
    return out


def _rfc3339(us: int | None) -> str:
    """Protobuf-JSON style timestamp: 'Z', with 0, 3 or 6 fractional digits."""
    if us is None:
        return _EPOCH_JSON
    dt = _EPOCH_NAIVE + timedelta(microseconds=us)
    if us % 1_000_000 == 0:
        return dt.isoformat(timespec="seconds") + "Z"
    if us % 1000 == 0:
        return dt.isoformat(timespec="milliseconds") + "Z"
    return dt.isoformat(timespec="microseconds") + "Z"


class OnlineColumn:
    """One output feature: values plus the per-row data its statuses derive from.

    ``row_status`` / ``event_us`` are shared by every feature of one stored view (None for
    on-demand features: their status only depends on the value). ``values`` is a list (None
    for nulls) or, for a batch decoded at once without nulls, a numpy array: Python objects
    are then made only by the conversions that need them.
    """

    __slots__ = ("event_us", "field", "row_status", "values")

    def __init__(
        self,
        field: Field,
        values: Sequence[Any] | np.ndarray[Any, Any],
        row_status: Sequence[FieldStatus] | None,
        event_us: Sequence[int | None] | None,
    ) -> None:
        self.field = field
        self.values = values
        self.row_status = row_status
        self.event_us = event_us

    def has_nulls(self) -> bool:
        return not isinstance(self.values, np.ndarray) and None in self.values

    def py_values(self) -> list[Any]:
        """The values as Python objects."""
        v = self.values
        return v.tolist() if isinstance(v, np.ndarray) else list(v)

    def statuses(self) -> list[FieldStatus]:
        if self.row_status is None:
            return [NULL_VALUE if v is None else PRESENT for v in self.values]
        if not self.has_nulls():
            return list(self.row_status)
        return [
            NULL_VALUE if s is PRESENT and v is None else s
            for s, v in zip(self.row_status, self.values, strict=True)
        ]


#: one view's part of a read: a sequence of values per feature (the view's features in its
#: reader's order), a status per row and the event time per row (µs, None when not found)
ViewRows = tuple[Sequence[Any], Sequence[FieldStatus], Sequence[Any]]


@dataclass(frozen=True)
class FeastLayout:
    """What Feast's JSON of one compiled read keeps from request to request, when every
    output is a stored number or bool: the head of the body (feature names), where each
    output's values are, and the runs of neighbouring outputs of one view."""

    head: bytes
    #: (view, feature) per output; None: the outputs are the first view's features in order
    where: tuple[tuple[int, int], ...] | None
    #: (first output, end, view) per run of outputs of one view
    runs: tuple[tuple[int, int, int], ...]
    count: int


def feast_layout(
    key_names: Sequence[str], outputs: Sequence[tuple[int, int, Field]], widths: Sequence[int]
) -> FeastLayout | None:
    """The layout of a read whose ``outputs`` are (view, feature index, output field) and
    whose views hold ``widths`` features; None when an output is not a stored number."""
    if not outputs or any(i < 0 or f.dtype.name not in _NUMERIC for i, _, f in outputs):
        return None
    names = [*key_names, *(f.name for _, _, f in outputs)]
    runs: list[tuple[int, int, int]] = []
    for k, (i, _, _) in enumerate(outputs):
        if runs and runs[-1][2] == i:
            runs[-1] = (runs[-1][0], k + 1, i)
        else:
            runs.append((k, k + 1, i))
    where = tuple((i, j) for i, j, _ in outputs)
    in_order = len(widths) == 1 and where == tuple((0, j) for j in range(widths[0]))
    return FeastLayout(
        head=b'{"metadata":{"feature_names":' + orjson.dumps(names) + b'},"results":[',
        where=None if in_order else where,
        runs=tuple(runs),
        count=len(outputs),
    )


class OnlineResponse:
    """``columns``: the features in requested order, or a function making them (called the
    first time they are needed). ``feast``: the read's ``FeastLayout`` and its rows per view,
    from which ``feast_json_bytes`` answers without making the columns."""

    def __init__(
        self,
        keys: Sequence[tuple[Field, Sequence[Any]]],
        columns: Sequence[OnlineColumn] | Callable[[], Sequence[OnlineColumn]],
        feast: tuple[FeastLayout, Sequence[ViewRows]] | None = None,
    ) -> None:
        self._keys = keys
        if callable(columns):
            self._made: Sequence[OnlineColumn] | None = None
            self._make: Callable[[], Sequence[OnlineColumn]] | None = columns
        else:
            self._made, self._make = columns, None
        self._feast = feast

    @property
    def _columns(self) -> Sequence[OnlineColumn]:
        made = self._made
        if made is None:
            assert self._make is not None
            made = self._made = self._make()
        return made

    # ---- shape --------------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        """Output feature names in requested order (join keys excluded)."""
        return [c.field.name for c in self._columns]

    @property
    def join_keys(self) -> list[str]:
        return [f.name for f, _ in self._keys]

    @property
    def fields(self) -> list[Field]:
        """Join keys then features, each with its dtype."""
        return [f for f, _ in self._keys] + [c.field for c in self._columns]

    def __len__(self) -> int:
        if self._keys:
            return len(self._keys[0][1])
        return len(self._columns[0].values) if self._columns else 0

    # ---- per-value metadata -------------------------------------------------------------
    @property
    def statuses(self) -> dict[str, list[FieldStatus]]:
        """Feature name -> status per entity row."""
        return {c.field.name: c.statuses() for c in self._columns}

    @property
    def event_timestamps(self) -> dict[str, list[datetime | None]]:
        """Feature name -> event time (UTC) of the stored row per entity (None if absent or
        on-demand)."""
        out: dict[str, list[datetime | None]] = {}
        for c in self._columns:
            if c.event_us is None:
                out[c.field.name] = [None] * len(c.values)
            else:
                out[c.field.name] = [
                    None if us is None else micros_to_datetime(us) for us in c.event_us
                ]
        return out

    # ---- conversions --------------------------------------------------------------------
    def to_dict(self) -> dict[str, list[Any]]:
        """Name -> Python values (join keys first, then features in requested order)."""
        out: dict[str, list[Any]] = {f.name: list(v) for f, v in self._keys}
        for c in self._columns:
            out[c.field.name] = c.py_values()
        return out

    def to_arrow(self) -> pa.Table:
        """A table typed by each field's dtype (UnixTimestamp is timestamp[us, UTC])."""
        arrays = [pa.array(list(v), type=f.dtype.arrow) for f, v in self._keys]
        arrays += [_arrow_column(c.values, c.field) for c in self._columns]
        return pa.Table.from_arrays(arrays, names=[f.name for f in self.fields])

    def to_df(self) -> pd.DataFrame:
        df: pd.DataFrame = self.to_arrow().to_pandas()
        return df

    def to_numpy(self) -> dict[str, np.ndarray[Any, Any]]:
        """Name -> array of ``dtype.numpy``. Missing floats are NaN and missing timestamps
        NaT; integer or bool columns with missing values become object arrays with None."""
        out: dict[str, np.ndarray[Any, Any]] = {}
        for f, vals in self._keys:
            out[f.name] = _numpy_column(vals, f)
        for c in self._columns:
            out[c.field.name] = _numpy_column(c.values, c.field)
        return out

    def to_feast_json(self) -> dict[str, Any]:
        """Feast's columnar feature-server response as Python objects (see
        ``feast_json_bytes``; NaN floats become None, as in the JSON)."""
        out: dict[str, Any] = orjson.loads(self.feast_json_bytes())
        return out

    def feast_json_bytes(self, feast_statuses: bool = False) -> bytes:
        """Feast's columnar feature-server response, serialized::

        {"metadata": {"feature_names": [join keys..., features...]},
         "results": [{"values": [...], "statuses": [...], "event_timestamps": [...]}, ...]}

        Absent timestamps are "1970-01-01T00:00:00Z" as in Feast; bytes are base64 (as
        protobuf JSON encodes them); UnixTimestamp feature values are epoch seconds (as
        Feast's ``unix_timestamp_val``); NaN is null. ``feast_statuses``: a stored null is
        PRESENT, as Feast says (tureen: NULL_VALUE).
        Statuses and timestamps shared by every feature of one view are encoded once
        (as pre-serialized fragments) and the whole body in one ``orjson.dumps``; a read of
        numbers without nulls is put together from its ``FeastLayout`` instead (the same
        bytes, about a quarter of the work).
        """
        n = len(self)
        if n and self._feast is not None:
            body = _laid_out_feast_json(*self._feast, self._keys, n)
            if body is not None:
                return body
        frag = orjson.Fragment
        epoch = frag(orjson.dumps([_EPOCH_JSON] * n))
        results: list[dict[str, Any]] = []
        if self._keys:
            present = frag(orjson.dumps([PRESENT.value] * n))
            results = [
                {
                    "values": _json_values(vals, f, native=False),
                    "statuses": present,
                    "event_timestamps": epoch,
                }
                for f, vals in self._keys
            ]
        stamps_of: dict[int, orjson.Fragment] = {}
        statuses_of: dict[int, orjson.Fragment] = {}
        ndarray = np.ndarray
        for c in self._columns:
            vals = c.values
            event_us, row_status = c.event_us, c.row_status
            stamps = epoch
            if event_us is not None:
                known = stamps_of.get(id(event_us))
                if known is None:  # shared by every feature of the view: encode once
                    known = stamps_of[id(event_us)] = frag(orjson.dumps(_rfc3339_many(event_us)))
                stamps = known
            is_array = isinstance(vals, ndarray)
            statuses: orjson.Fragment | list[str] | None = None
            if row_status is not None and (feast_statuses or is_array or None not in vals):
                statuses = statuses_of.get(id(row_status))
                if statuses is None:  # shared by every feature of the view: encode once
                    statuses = statuses_of[id(row_status)] = frag(
                        orjson.dumps([_STATUS_TEXT[s] for s in row_status])
                    )
            if statuses is None:
                statuses = [_STATUS_TEXT[s] for s in c.statuses()]
            if isinstance(vals, ndarray):  # numbers without nulls, serialized by orjson
                json_vals: Any = vals.astype(np.float64) if vals.dtype == np.float32 else vals
            elif c.field.dtype.name in _JSON_READY:
                json_vals = vals
            else:
                json_vals = _json_values(vals, c.field)
            results.append({"values": json_vals, "statuses": statuses, "event_timestamps": stamps})
        return orjson.dumps(
            {
                "metadata": {"feature_names": self.join_keys + self.feature_names},
                "results": results,
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )


#: dtypes whose JSON values hold no comma or bracket (numbers, true/false, null)
_NUMERIC = frozenset({"Int32", "Int64", "Float32", "Float64", "Bool"})
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
#: n -> the JSON of n PRESENT statuses; the end of a join key's result (those statuses and
#: n epoch timestamps); the JSON of one event time (rows are read again and again)
_PRESENT_JSON: dict[int, bytes] = {}
_KEY_TAILS: dict[int, bytes] = {}
_STAMP_JSON: dict[int | None, bytes] = {}


def _present_json(n: int) -> bytes:
    text = _PRESENT_JSON.get(n)
    if text is None:
        text = orjson.dumps([PRESENT.value] * n)
        if n <= 64:
            _PRESENT_JSON[n] = text
    return text


def _key_tail(n: int) -> bytes:
    tail = _KEY_TAILS.get(n)
    if tail is None:
        tail = (
            b',"statuses":'
            + _present_json(n)
            + b',"event_timestamps":'
            + orjson.dumps([_EPOCH_JSON] * n)
            + b"}"
        )
        if n <= 64:
            _KEY_TAILS[n] = tail
    return tail


def _stamps_json(micros: Sequence[int | None]) -> bytes:
    if len(micros) != 1:
        return orjson.dumps(_rfc3339_many(micros))
    text = _STAMP_JSON.get(micros[0])
    if text is None:
        if len(_STAMP_JSON) > 65_536:
            _STAMP_JSON.clear()
        text = _STAMP_JSON[micros[0]] = orjson.dumps(_rfc3339_many(micros))
    return text


def _plain(values: Sequence[Any], field: Field) -> bool:
    """Join-key values that go into JSON as they are: ints and strings (what a parsed request
    holds), of a dtype ``_json_values`` passes through."""
    if field.dtype.name not in _JSON_READY:
        return False
    for v in values:
        if type(v) is not int and type(v) is not str:
            return False
    return True


def _laid_out_feast_json(
    layout: FeastLayout,
    views: Sequence[ViewRows],
    keys: Sequence[tuple[Field, Sequence[Any]]],
    n: int,
) -> bytes | None:
    """``feast_json_bytes`` of a read of stored numbers (or bools), none null: the values of
    all features go through one ``orjson.dumps``, cut apart at ``],[`` (no number holds a
    comma or a bracket; nested lists would show as a count mismatch), and each view's
    statuses and timestamps are encoded once; no work per feature when the outputs are one
    view's features in order. The same bytes as the general path (tested byte for byte);
    None when a value is null or NaN, for the general path to take."""
    where = layout.where
    values = views[0][0] if where is None else [views[i][0][j] for i, j in where]
    dumps = orjson.dumps
    packed = dumps(values, option=_NUMPY)
    if b"null" in packed:
        return None  # a null (NULL_VALUE, NOT_FOUND, past its TTL) or NaN
    inner = packed[2:-2].split(b"],[")
    if len(inner) != layout.count:
        return None
    parts = [layout.head]
    key_tail = _key_tail(n)
    for f, vals in keys:
        parts.append(
            b'{"values":'
            + dumps(vals if _plain(vals, f) else _json_values(vals, f, native=False), option=_NUMPY)
            + key_tail
            + b","
        )
    runs = layout.runs
    if len(runs) == 1:  # one view
        view = views[runs[0][2]]
        tail = _view_tail(view[1], view[2], n)
        parts.append(b'{"values":[' + (tail + b',{"values":[').join(inner) + tail + b"]}")
        return b"".join(parts)
    pieces: list[bytes] = []
    for start, end, i in runs:
        view = views[i]
        tail = _view_tail(view[1], view[2], n)
        pieces.append(b'{"values":[' + (tail + b',{"values":[').join(inner[start:end]) + tail)
    parts.append(b",".join(pieces) + b"]}")
    return b"".join(parts)


def _view_tail(status: Sequence[FieldStatus], event_us: Sequence[int | None], n: int) -> bytes:
    """What follows the values of each feature of a view: its statuses and event times."""
    return (
        b'],"statuses":'
        + (
            _present_json(n)
            if status.count(PRESENT) == n
            else orjson.dumps([_STATUS_TEXT[s] for s in status])
        )
        + b',"event_timestamps":'
        + _stamps_json(event_us)
        + b"}"
    )


def _arrow_column(values: Sequence[Any] | np.ndarray[Any, Any], field: Field) -> pa.Array:
    if isinstance(values, np.ndarray):
        return pa.array(values, type=field.dtype.arrow)
    vals = values if isinstance(values, list) else list(values)
    return pa.array(vals, type=field.dtype.arrow, from_pandas=True)


def _numpy_column(
    values: Sequence[Any] | np.ndarray[Any, Any], field: Field
) -> np.ndarray[Any, Any]:
    dt = field.dtype
    if isinstance(values, np.ndarray) and dt.element is None and dt.numpy != np.dtype(object):
        return values.astype(dt.numpy, copy=False)
    vals = list(values)
    if dt.element is not None or dt.numpy == np.dtype(object):
        arr = np.empty(len(vals), dtype=object)
        arr[:] = vals
        return arr
    if dt.name == "UnixTimestamp":
        return np.asarray(
            _arrow_column(vals, field).to_numpy(zero_copy_only=False), dtype="datetime64[us]"
        )
    if any(v is None for v in vals):
        if dt.numpy.kind == "f":
            return np.array([math.nan if v is None else v for v in vals], dtype=dt.numpy)
        arr = np.empty(len(vals), dtype=object)
        arr[:] = vals
        return arr
    return np.array(vals, dtype=dt.numpy)


_JSON_READY = {"Int32", "Int64", "Float32", "Float64", "String", "Bool"}


def _json_values(values: Sequence[Any], field: Field, native: bool = True) -> list[Any]:
    """Values as JSON-ready Python objects. ``native``: values are known to be Python
    objects (decoded features), so numbers and strings pass through untouched."""
    dt = field.dtype
    name = dt.element.name if dt.element is not None else dt.name
    if name in _JSON_READY and (native or not any(isinstance(v, np.generic) for v in values)):
        return list(values)
    return [_json_value(v, field) for v in values]


def _json_value(v: Any, field: Field) -> Any:
    if v is None:
        return None
    name = field.dtype.element.name if field.dtype.element is not None else field.dtype.name
    if name == "Bytes":
        if isinstance(v, list):
            return [None if x is None else base64.b64encode(x).decode() for x in v]
        return base64.b64encode(v).decode()
    if name == "UnixTimestamp":
        if isinstance(v, list):
            return [None if x is None else _epoch(x) for x in v]
        return _epoch(v)
    if isinstance(v, np.generic):
        return v.item()
    return v


def _epoch(v: Any) -> Any:
    """Seconds since the epoch (what Feast's JSON carries for a UnixTimestamp value)."""
    if isinstance(v, datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=UTC)
        return int(v.timestamp() // 1)
    if isinstance(v, np.datetime64):
        return int(v.astype("datetime64[s]").astype(np.int64))
    return v
