"""Per-service vectors in the SQLite online store (``KeepsVectors``).

A vector is one table, ``"<project>:__vector:<service>:<generation>"``, keyed like its views'
tables (``entity_id INTEGER PRIMARY KEY`` or ``entity_key BLOB``), with one column ``s<i>``
per view (a slot) holding a copy of the view's stored row for that entity, or NULL, and a
stored generated column ``v``, the slots back to back (NULL while a slot is): a read of
every slot is then one column per entity, not one per view.

- Invariant: every slot holds exactly the row its view's table holds (or NULL when the
  view holds none). ``sync`` builds a vector from the view tables in one transaction; every
  write of a view then upserts its slots in the SAME transaction as the view's table, newer
  wins by the row's bytes 1..16, which compare exactly like the view table's
  ``(event_ts, created_ts)`` (``tureen.online.encoding``), ties to the later write: the
  two decide alike, so a crash or a rollback never separates them.
- A vector table is never altered: a changed definition gets a new generation (a new
  table), so a reader holding a cached (table, slots) either reads a table with exactly
  those slots or finds it gone and reads view by view.
- The catalog (``__tureen_vectors``) changes only together with a CREATE or DROP, so
  ``PRAGMA schema_version`` tells when a cached copy of it is current. A writer checks it
  inside its transaction, every time. A reader needs no such check to be exact (a vector it
  remembers is still right or gone), so it looks for vectors made by other processes at
  most every ``READ_RECHECK_SECONDS``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tureen.definitions import FeatureView
from tureen.online.protocol import VectorSpec

log = logging.getLogger(__name__)
CATALOG = "__tureen_vectors"
READ_RECHECK_SECONDS = 5.0


@dataclass(frozen=True)
class Vector:
    name: str
    table: str  # quoted
    column: str  # the key column: entity_id or entity_key
    slots: Mapping[str, int]  # view name -> slot

    def upsert_sql(self, view: str) -> str:
        """The write of ``view``'s slot: parameters (key, row), newer (or equal) wins."""
        s, c = f"s{self.slots[view]}", self.column
        return (f"INSERT INTO {self.table} ({c}, {s}) VALUES (?, ?) ON CONFLICT ({c}) DO "
                f"UPDATE SET {s} = excluded.{s} WHERE {s} IS NULL OR "
                f"substr(excluded.{s}, 2, 16) >= substr({s}, 2, 16)")

    def select_sql(self, slots: Sequence[int], count: int) -> str:
        """The slots of ``count`` keys (``= ?`` for one), key first."""
        cols = ", ".join(f"s{i}" for i in slots)
        where = "= ?" if count == 1 else f"IN ({','.join('?' * count)})"
        return f"SELECT {self.column}, {cols} FROM {self.table} WHERE {self.column} {where}"


def _ddl(column: str, slots: int) -> str:
    # ``v``: every slot's row back to back (NULL while a slot is), kept by SQLite on every
    # write, so a read of the whole vector aggregates one column (``sqlite_packed``).
    whole = " || ".join(f"s{i}" for i in range(slots))
    cols = "".join(f", s{i} BLOB" for i in range(slots))
    cols += f", v BLOB GENERATED ALWAYS AS (CAST({whole} AS BLOB)) STORED"
    if column == "entity_id":
        return f"entity_id INTEGER PRIMARY KEY{cols})"
    return f"entity_key BLOB PRIMARY KEY{cols}) WITHOUT ROWID"


def signature(views: Sequence[FeatureView], column: str) -> str:
    """What a vector's table depends on: its views in slot order and their keys."""
    keys = [[f.name, f.dtype.name] for f in views[0].key_fields]
    return json.dumps([[v.name for v in views], keys, column])


class VectorCatalog:
    """The vectors of one project, cached per ``schema_version``."""

    def __init__(self, project: str, quote: Callable[[str], str]) -> None:
        self.project = project
        self._quote = quote
        self._known: tuple[int, dict[str, Vector]] = (-1, {})
        self._checked = -READ_RECHECK_SECONDS  # monotonic time of the last check

    def forget(self) -> None:
        self._known = (-1, {})
        self._checked = -READ_RECHECK_SECONDS

    def current(self, conn: sqlite3.Connection, reading: bool = False) -> dict[str, Vector]:
        """The vectors now (``reading``: as of at most ``READ_RECHECK_SECONDS`` ago)."""
        now = time.monotonic()
        if reading and now - self._checked < READ_RECHECK_SECONDS:
            return self._known[1]
        self._checked = now
        version = int(conn.execute("PRAGMA schema_version").fetchone()[0])
        known_version, known = self._known
        if version == known_version:
            return known
        vectors: dict[str, Vector] = {}
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (CATALOG,)).fetchone():
            for name, table, sig in conn.execute(
                    f"SELECT name, tab, sig FROM {CATALOG} WHERE project = ?", (self.project,)):
                views, _, column = json.loads(sig)
                vectors[name] = Vector(name, table, column,
                                       {v: i for i, v in enumerate(views)})
        self._known = (version, vectors)
        return vectors

    def holding(self, conn: sqlite3.Connection, view: str) -> list[Vector]:
        return [v for v in self.current(conn).values() if view in v.slots]

    def covering(self, conn: sqlite3.Connection, views: Sequence[str]) -> Vector | None:
        """A vector holding every one of ``views`` (the smallest), or None."""
        found = [v for v in self.current(conn, reading=True).values()
                 if all(n in v.slots for n in views)]
        return min(found, key=lambda v: len(v.slots)) if found else None

    # ---- changes (inside the caller's write transaction) ----------------------------------
    def drop(self, conn: sqlite3.Connection, vector: Vector) -> None:
        conn.execute(f"DROP TABLE IF EXISTS {vector.table}")
        conn.execute(f"DELETE FROM {CATALOG} WHERE project = ? AND name = ?",
                     (self.project, vector.name))

    def sync(self, conn: sqlite3.Connection, specs: Sequence[VectorSpec],
             layout_of: Callable[[FeatureView], tuple[str | None, str]]) -> None:
        """Keep exactly ``specs``. ``layout_of(view)``: (the key column of the view's table
        if it exists, the one a new table would get)."""
        if not specs and not conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?",
                                          (CATALOG,)).fetchone():
            return
        conn.execute(f"CREATE TABLE IF NOT EXISTS {CATALOG} (project TEXT NOT NULL, name TEXT "
                     "NOT NULL, tab TEXT NOT NULL, sig TEXT NOT NULL, PRIMARY KEY (project, name))")
        existing = {name: (table, sig) for name, table, sig in conn.execute(
            f"SELECT name, tab, sig FROM {CATALOG} WHERE project = ?", (self.project,))}
        wanted: set[str] = set()
        for spec in specs:
            columns = {layout_of(v) for v in spec.views}
            tables = {c for c, _ in columns if c is not None}
            column = tables.pop() if len(tables) == 1 else next(iter(columns))[1]
            keys = {tuple((f.name, f.dtype.name) for f in v.key_fields) for v in spec.views}
            if len(keys) != 1 or len(tables) > 1 or len(spec.views) < 2:
                log.warning("feature service %r: no online vector (its views are not all "
                            "keyed alike); it is read view by view", spec.name)
                continue
            wanted.add(spec.name)
            sig = signature(spec.views, column)
            old = existing.get(spec.name)
            if old is not None and old[1] == sig:
                continue
            if old is not None:
                conn.execute(f"DROP TABLE IF EXISTS {old[0]}")
            self._build(conn, spec, column, sig, layout_of)
        for name, (table, _) in existing.items():
            if name not in wanted:
                conn.execute(f"DROP TABLE IF EXISTS {table}")
                conn.execute(f"DELETE FROM {CATALOG} WHERE project = ? AND name = ?",
                             (self.project, name))
        self.forget()

    def _build(self, conn: sqlite3.Connection, spec: VectorSpec, column: str, sig: str,
               layout_of: Callable[[FeatureView], tuple[str | None, str]]) -> None:
        table = self._quote(f"__vector:{spec.name}:{uuid.uuid4().hex[:12]}")
        conn.execute(f"CREATE TABLE {table} ({_ddl(column, len(spec.views))}")
        for i, view in enumerate(spec.views):
            if layout_of(view)[0] is None:  # never written: the slot stays NULL
                continue
            conn.execute(f"INSERT INTO {table} ({column}, s{i}) SELECT {column}, value FROM "
                         f"{self._quote(view.name)} WHERE true ON CONFLICT ({column}) DO "
                         f"UPDATE SET s{i} = excluded.s{i}")
        conn.execute(f"INSERT INTO {CATALOG} VALUES (?, ?, ?, ?) ON CONFLICT (project, name) "
                     "DO UPDATE SET tab = excluded.tab, sig = excluded.sig",
                     (self.project, spec.name, table, sig))
