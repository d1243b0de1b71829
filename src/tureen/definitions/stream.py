"""Stream feature views: features computed from events as they arrive (names as in Feast).

A ``StreamFeatureView`` reads a ``KafkaSource`` (consumed by ``tureen ingest``) or a
``PushSource`` (events posted over HTTP). Its ``schema`` lists the fields each event carries
(join keys and values). Without ``aggregations`` the view serves the latest event's values,
like any feature view. With ``aggregations`` it serves windowed aggregates instead, one
feature per ``Aggregation``:

- a window of ``time_window`` ending at every multiple of ``slide_interval`` (UTC epoch
  aligned; the default slide is the window, i.e. tumbling windows) covers the events with
  ``end - time_window <= event_time < end``;
- the feature row for window end ``end`` has ``event_timestamp = end`` and is written when
  the source's watermark passes ``end``, so a point-in-time join at time ``t`` reads the
  newest closed window at or before ``t``, online and offline alike;
- nulls are skipped; an empty window gives ``count`` 0 and null for the other functions;
- an event behind the source's watermark when it arrives is late. ``late_events="drop"``
  (the default) counts it in no window; ``late_events="update"`` counts it if it is at
  most ``allowed_lateness`` behind the watermark, and rewrites the rows of the windows
  it changes, already closed ones included, with a later ``created_timestamp`` (window end
  plus one microsecond per late event counted in it), so the online store and a
  point-in-time join both take the updated row. Either way late events are counted in the
  status and metrics, never ignored silently.

Every accepted event is appended to the source's offline log; the window rows are kept in
``<offline log>/_windows/<view>/`` (the view's ``offline_source``), written by the stream and
recomputed from the log by ``tureen ingest backfill`` with the same code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from tureen.definitions.feature_view import FeatureView
from tureen.definitions.field import Entity, Field, check_name
from tureen.definitions.sources import FileSource, KafkaSource, PushSource, source_from_dict
from tureen.errors import InvalidRequestError
from tureen.types import Float32, Float64, Int32, Int64, UnixTimestamp

AggFunction = Literal["sum", "count", "mean", "min", "max", "count_distinct_approx"]
LatePolicy = Literal["drop", "update"]
FUNCTIONS: tuple[str, ...] = ("sum", "count", "mean", "min", "max", "count_distinct_approx")
_NUMERIC = (Int32, Int64, Float32, Float64)
WINDOWS_FOLDER = "_windows"


def _label(window: timedelta) -> str:
    """``timedelta(days=7)`` -> ``7d``; ``timedelta(minutes=90)`` -> ``90m``."""
    secs = window.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if secs >= size and secs % size == 0:
            return f"{int(secs // size)}{unit}"
    return f"{int(secs * 1000)}ms"


@dataclass(frozen=True)
class Aggregation:
    """``function`` of ``column`` over a sliding event-time window.

    ``name`` defaults to ``<function>_<column>_<window>`` (e.g. ``sum_amount_1h``).
    """

    column: str
    function: AggFunction
    time_window: timedelta
    slide_interval: timedelta | None = None
    name: str = ""

    def __post_init__(self) -> None:
        check_name("Aggregation column", self.column)
        if self.function not in FUNCTIONS:
            raise InvalidRequestError(
                f"Aggregation of {self.column!r}: function must be one of "
                f"{', '.join(FUNCTIONS)}, got {self.function!r}."
            )
        if not isinstance(self.time_window, timedelta) or self.time_window <= timedelta(0):
            raise InvalidRequestError(
                f"Aggregation {self.function}({self.column}): time_window must be a positive "
                f"timedelta, got {self.time_window!r}."
            )
        slide = self.slide_interval if self.slide_interval is not None else self.time_window
        if not isinstance(slide, timedelta) or slide <= timedelta(0):
            raise InvalidRequestError(
                f"Aggregation {self.function}({self.column}): slide_interval must be a "
                f"positive timedelta, got {self.slide_interval!r}."
            )
        if slide > self.time_window:
            raise InvalidRequestError(
                f"Aggregation {self.function}({self.column}): slide_interval {slide} is longer "
                f"than time_window {self.time_window}; events between windows would be lost."
            )
        object.__setattr__(self, "slide_interval", slide)
        if not self.name:
            object.__setattr__(
                self, "name", f"{self.function}_{self.column}_{_label(self.time_window)}")
        check_name("Aggregation name", self.name)

    @property
    def window_us(self) -> int:
        return _micros(self.time_window)

    @property
    def slide_us(self) -> int:
        assert self.slide_interval is not None
        return _micros(self.slide_interval)

    def output_field(self, column: Field) -> Field:
        """The feature this aggregation produces from input ``column``."""
        if self.function in ("count", "count_distinct_approx"):
            return Field(self.name, Int64)
        if self.function == "mean":
            return Field(self.name, Float64)
        if self.function == "sum":
            return Field(self.name, Int64 if column.dtype in (Int32, Int64) else Float64)
        return Field(self.name, column.dtype)

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "function": self.function, "name": self.name,
                "time_window_us": self.window_us, "slide_interval_us": self.slide_us}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Aggregation:
        return cls(d["column"], d["function"], timedelta(microseconds=d["time_window_us"]),
                   timedelta(microseconds=d["slide_interval_us"]), d["name"])


def _micros(td: timedelta) -> int:
    return (td.days * 86_400 + td.seconds) * 1_000_000 + td.microseconds


@dataclass(frozen=True)
class StreamFeatureView(FeatureView):
    """A feature view fed by events: latest values, or windowed ``aggregations``.

    ``schema`` lists the event fields (join keys and values); with ``aggregations`` the
    view's features are the aggregations' outputs. ``offline=False`` skips the offline log
    (latest-value views only: aggregations rebuild their windows from it after a restart).
    """

    aggregations: Sequence[Aggregation] = ()
    offline: bool = True
    late_events: LatePolicy = "drop"
    allowed_lateness: timedelta = timedelta(0)

    def _check_source(self) -> None:
        object.__setattr__(self, "aggregations", tuple(self.aggregations))
        self._check_lateness()
        if not isinstance(self.source, (KafkaSource, PushSource)):
            raise InvalidRequestError(
                f"StreamFeatureView {self.name!r}: source must be a KafkaSource or a "
                f"PushSource, got {type(self.source).__name__}."
            )
        inputs = {f.name: f for f in self.schema}
        names: set[str] = set()
        slides = {a.slide_us for a in self.aggregations}
        for agg in self.aggregations:
            if not isinstance(agg, Aggregation):
                raise InvalidRequestError(
                    f"StreamFeatureView {self.name!r}: aggregations must be Aggregation(...) "
                    f"objects, got {agg!r}."
                )
            col = inputs.get(agg.column)
            if col is None:
                raise InvalidRequestError(
                    f"StreamFeatureView {self.name!r}: aggregation {agg.name!r} reads column "
                    f"{agg.column!r}, which the schema does not declare; add "
                    f"Field({agg.column!r}, ...) to the schema."
                )
            numeric = col.dtype in _NUMERIC
            if agg.function in ("sum", "mean") and not numeric:
                raise InvalidRequestError(
                    f"StreamFeatureView {self.name!r}: {agg.function} needs a numeric column, "
                    f"but {agg.column!r} is {col.dtype.name}."
                )
            if agg.function in ("min", "max") and not (numeric or col.dtype is UnixTimestamp):
                raise InvalidRequestError(
                    f"StreamFeatureView {self.name!r}: {agg.function} needs a numeric or "
                    f"timestamp column, but {agg.column!r} is {col.dtype.name}."
                )
            if col.dtype.is_array:
                raise InvalidRequestError(
                    f"StreamFeatureView {self.name!r}: cannot aggregate array column "
                    f"{agg.column!r}."
                )
            if agg.name in names or agg.name in self.join_keys:
                raise InvalidRequestError(
                    f"StreamFeatureView {self.name!r}: two aggregations (or a join key) are "
                    f"named {agg.name!r}; pass name=... to tell them apart."
                )
            names.add(agg.name)
        if len(slides) > 1:
            raise InvalidRequestError(
                f"StreamFeatureView {self.name!r}: every aggregation of one view needs the same "
                "slide_interval (one row per window end); split the view in two."
            )
        if self.aggregations and not self.offline:
            raise InvalidRequestError(
                f"StreamFeatureView {self.name!r}: a view with aggregations needs offline=True: "
                "its windows are rebuilt from the offline log after a restart."
            )

    def _check_lateness(self) -> None:
        where = f"StreamFeatureView {self.name!r}"
        if self.late_events not in ("drop", "update"):
            raise InvalidRequestError(
                f"{where}: late_events must be 'drop' or 'update', got {self.late_events!r}.")
        lateness = self.allowed_lateness
        if not isinstance(lateness, timedelta) or lateness < timedelta(0):
            raise InvalidRequestError(
                f"{where}: allowed_lateness must be a timedelta >= 0, got {lateness!r}.")
        if self.late_events == "update" and not self.aggregations:
            raise InvalidRequestError(
                f"{where}: late_events='update' applies to windowed aggregations; a "
                "latest-value view always takes a late event (the online store keeps the "
                "newer row). Remove late_events or add aggregations.")
        if self.late_events == "update" and lateness <= timedelta(0):
            raise InvalidRequestError(
                f"{where}: late_events='update' needs allowed_lateness > 0 (how far behind "
                "the watermark an event may be and still update its windows), e.g. "
                "allowed_lateness=timedelta(hours=1).")
        if self.late_events == "drop" and lateness > timedelta(0):
            raise InvalidRequestError(
                f"{where}: allowed_lateness is used with late_events='update' only; with "
                "'drop' no late event enters a window. Set late_events='update' or remove "
                "allowed_lateness.")

    @property
    def allowed_lateness_us(self) -> int:
        """How far behind the watermark an event may be and still update its windows (0:
        late events are dropped from windows)."""
        return _micros(self.allowed_lateness) if self.late_events == "update" else 0

    # ---- what the view reads and serves --------------------------------------------------
    @property
    def input_fields(self) -> tuple[Field, ...]:
        """The event fields (schema minus join keys)."""
        keys = set(self.join_keys)
        return tuple(f for f in self.schema if f.name not in keys)

    @property
    def features(self) -> tuple[Field, ...]:
        if not self.aggregations:
            return self.input_fields
        inputs = {f.name: f for f in self.schema}
        return tuple(a.output_field(inputs[a.column]) for a in self.aggregations)

    @property
    def slide_us(self) -> int:
        return self.aggregations[0].slide_us if self.aggregations else 0

    @property
    def event_source(self) -> KafkaSource | PushSource:
        assert isinstance(self.source, (KafkaSource, PushSource))
        return self.source

    @property
    def event_log(self) -> FileSource:
        """The offline log of accepted events (the source's batch source)."""
        return self.event_source.batch_source

    @property
    def offline_source(self) -> FileSource:
        log = self.event_log
        if not self.aggregations:
            return log
        return FileSource(
            path=f"{log.path.rstrip('/')}/{WINDOWS_FOLDER}/{self.name}",
            timestamp_field="event_timestamp",
            created_timestamp_column="created_timestamp",
            name=f"{self.name} windows",
        )

    @property
    def input_view(self) -> FeatureView:
        """A plain view over the raw events (validates them; names as in the offline log)."""
        return FeatureView(
            name=self.name, entities=self.entities, schema=self.schema,
            source=PushSource(f"{self.name}-events", self.event_log), ttl=self.ttl,
        )

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["kind"] = "stream"
        d["aggregations"] = [a.to_dict() for a in self.aggregations]
        d["offline"] = self.offline
        if self.late_events != "drop":  # absent: registries written before it load the same
            d["late_events"] = self.late_events
            d["allowed_lateness_us"] = _micros(self.allowed_lateness)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], entities: Mapping[str, Entity]) -> StreamFeatureView:
        src = source_from_dict(d["source"])
        assert isinstance(src, (KafkaSource, PushSource))
        return cls(
            name=d["name"],
            entities=[entities[n] for n in d["entities"]],
            schema=[Field.from_dict(f) for f in d["schema"]],
            source=src,
            ttl=timedelta(seconds=d.get("ttl_seconds", 0)),
            online=d.get("online", True),
            description=d.get("description", ""),
            tags=dict(d.get("tags", {})),
            owner=d.get("owner", ""),
            aggregations=[Aggregation.from_dict(a) for a in d.get("aggregations", [])],
            offline=d.get("offline", True),
            late_events=d.get("late_events", "drop"),
            allowed_lateness=timedelta(microseconds=d.get("allowed_lateness_us", 0)),
        )


__all__ = ["AggFunction", "Aggregation", "LatePolicy", "StreamFeatureView"]
