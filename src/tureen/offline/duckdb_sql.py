"""SQL text for the DuckDB engine: reading a source as a view's logical columns, the
point-in-time ASOF join and the latest-row query.

A source is read as ``keys..., features..., __ev, __cr`` where keys and features carry the
view's names (after ``field_mapping``) and declared types, and ``__ev`` / ``__cr`` are the
event and created timestamps as TIMESTAMPTZ (session time zone UTC, so naive = UTC).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tureen.definitions import FileSource
from tureen.errors import InvalidRequestError
from tureen.offline.source_files import FileSet
from tureen.types import DType

EV = "__ev"
CR = "__cr"
ROW = "__tureen_row"

_SCALAR_SQL = {
    "Int32": "INTEGER",
    "Int64": "BIGINT",
    "Float32": "FLOAT",
    "Float64": "DOUBLE",
    "String": "VARCHAR",
    "Bytes": "BLOB",
    "Bool": "BOOLEAN",
    "UnixTimestamp": "TIMESTAMPTZ",
}


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def sql_type(dtype: DType) -> str:
    if dtype.element is not None:
        return sql_type(dtype.element) + "[]"
    return _SCALAR_SQL[dtype.name]


def scan(files: FileSet, csv_types: Mapping[str, str] | None = None) -> str:
    """The table function call reading every file of ``files``."""
    names = "[" + ", ".join(literal(files.location.url(f)) for f in files.files) + "]"
    opts = [f"hive_partitioning = {str(files.hive).lower()}"]
    if len(files.files) > 1:
        opts.append("union_by_name = true")
    if files.location.file_format == "csv":
        opts.append("header = true")
        if csv_types:
            pairs = ", ".join(f"{literal(k)}: {literal(v)}" for k, v in csv_types.items())
            opts.append(f"types = {{{pairs}}}")
        return f"read_csv({names}, {', '.join(opts)})"
    return f"read_parquet({names}, {', '.join(opts)})"


@dataclass(frozen=True)
class Projection:
    """How a view's logical columns are read from a source's physical columns."""

    source: FileSource
    columns: Mapping[str, str]  # physical column -> DuckDB type (as DESCRIBE reports it)
    keys: Sequence[tuple[str, DType]]
    features: Sequence[tuple[str, DType]]
    what: str  # for messages, e.g. "feature view 'driver_stats'"

    def physical(self, logical: str) -> str:
        """The source column holding ``logical`` (reverses field_mapping)."""
        for src, dst in self.source.field_mapping.items():
            if dst == logical and src in self.columns:
                return src
        if logical in self.columns:
            return logical
        raise InvalidRequestError(
            f"{self.what}: source {self.source.path!r} has no column {logical!r}"
            f"{self._mapped_hint(logical)}. Its columns: {', '.join(self.columns)}. Fix the "
            "view's schema or the source's field_mapping."
        )

    def _mapped_hint(self, logical: str) -> str:
        srcs = [s for s, d in self.source.field_mapping.items() if d == logical]
        return f" (field_mapping reads it from {srcs[0]!r})" if srcs else ""

    def _timestamp(self, column: str, role: str) -> str:
        phys = column if column in self.columns else self.physical(column)
        t = self.columns[phys].upper()
        if t.startswith(("TIMESTAMP", "DATE", "VARCHAR")):
            return f"CAST({ident(phys)} AS TIMESTAMPTZ)"
        raise InvalidRequestError(
            f"{self.what}: {role} column {phys!r} of source {self.source.path!r} has type {t}; "
            "it must hold timestamps (or ISO 8601 strings)."
        )

    def query(self, scan_expr: str, where: Sequence[str] = ()) -> str:
        """SELECT keys, features, __ev, __cr over ``scan_expr``; rows without event time
        are dropped. ``where`` conditions may use the logical names."""
        cols = [
            f"CAST({ident(self.physical(name))} AS {sql_type(dt)}) AS {ident(name)}"
            for name, dt in [*self.keys, *self.features]
        ]
        cols.append(f"{self._timestamp(self.source.timestamp_field, 'timestamp')} AS {EV}")
        created = self.source.created_timestamp_column
        cr = self._timestamp(created, "created timestamp") if created else "NULL::TIMESTAMPTZ"
        cols.append(f"{cr} AS {CR}")
        conds = " AND ".join([f"{EV} IS NOT NULL", *where])
        return f"SELECT * FROM (SELECT {', '.join(cols)} FROM {scan_expr}) WHERE {conds}"

    @property
    def has_created(self) -> bool:
        return bool(self.source.created_timestamp_column)


def ts_literal(micros: int) -> str:
    return f"make_timestamp({int(micros)}::BIGINT)::TIMESTAMPTZ"


def keyed_source(proj: Projection, source_sql: str) -> str:
    """``source_sql`` with the ASOF ordering key: ``__k`` = (event, created; NULL created
    sorts lowest) when the source has created timestamps."""
    if not proj.has_created:
        return source_sql
    return (
        f"SELECT *, {{'t': {EV}, 'c': coalesce({CR}, '-infinity'::TIMESTAMPTZ)}} AS __k "
        f"FROM ({source_sql})"
    )


def pit_query(
    entity_view: str,
    entity_ts: str,
    proj: Projection,
    keyed_sql: str,
    outputs: Sequence[tuple[str, str]],
    ttl_us: int,
) -> str:
    """Point-in-time ASOF join of the registered entity rows with one view's rows
    (``keyed_sql``: :func:`keyed_source` of its projection, or a table staged from it).

    For each entity row: the source row with the greatest (event, created) whose event time
    is <= the entity time (created NULL sorts lowest); it is kept only when its event time is
    >= entity time - ttl (ttl 0: always). ``outputs`` pairs a feature with its output column.
    Rows come back in ``ROW`` order, one per entity row.
    """
    on = [f"e.{ident(k)} = f.{ident(k)}" for k, _ in proj.keys]
    if proj.has_created:
        on.append(f"{{'t': e.{ident(entity_ts)}, 'c': 'infinity'::TIMESTAMPTZ}} >= f.__k")
    else:
        on.append(f"e.{ident(entity_ts)} >= f.{EV}")
    if ttl_us > 0:
        keep = f"epoch_us(f.{EV}) >= epoch_us(e.{ident(entity_ts)}) - {int(ttl_us)}"
        cols = [
            f"CASE WHEN {keep} THEN f.{ident(feat)} END AS {ident(out)}" for feat, out in outputs
        ]
    else:
        cols = [f"f.{ident(feat)} AS {ident(out)}" for feat, out in outputs]
    return (
        f"SELECT {', '.join(cols)} FROM {ident(entity_view)} e ASOF LEFT JOIN ({keyed_sql}) f "
        f"ON {' AND '.join(on)} ORDER BY e.{ROW}"
    )


def latest_query(proj: Projection, source_sql: str) -> str:
    """Per entity key, the row with the greatest (event, created); created NULL sorts lowest.

    One hash aggregation, not a window sort (memory grows with the number of entities, not
    of rows): ``arg_max`` of the row by one 128-bit integer that orders like (event µs,
    created µs), created NULL as the smallest int64 (~2 x faster than ordering by a struct)."""
    keys = ", ".join(ident(k) for k, _ in proj.keys)
    carried = [name for name, _ in proj.features] + [EV, CR]
    payload = "{" + ", ".join(f"{literal(c)}: {ident(c)}" for c in carried) + "}"
    order = (f"(epoch_us({EV})::HUGEINT * 18446744073709551616 + "
             f"(coalesce(epoch_us({CR}), -9223372036854775808)::HUGEINT "
             "+ 9223372036854775808))")
    picked = ", ".join(f"__r[{literal(c)}] AS {ident(c)}" for c in carried)
    return (
        f"SELECT {keys}, {picked} FROM (SELECT {keys}, arg_max({payload}, {order}) AS __r "
        f"FROM ({source_sql}) GROUP BY {keys})"
    )


def csv_types(source: FileSource, logical: Sequence[tuple[str, DType]]) -> dict[str, str]:
    """Declared types for a CSV source's scalar columns, so '007' stays a string."""
    back = {dst: src for src, dst in source.field_mapping.items()}
    return {back.get(n, n): sql_type(dt) for n, dt in logical if dt.element is None}
