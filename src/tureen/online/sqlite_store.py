"""SqliteOnlineStore: the embedded default online store (one file, WAL mode).

One table per (project, feature view), ``entity_key BLOB PRIMARY KEY`` in a WITHOUT ROWID
table, so a point read is one B-tree lookup and dropping a view is ``DROP TABLE``. Each
thread gets its own connection: WAL lets readers run while a writer commits, and sqlite3
releases the GIL while it steps, so a threaded server reads in parallel.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any

import pyarrow as pa

from tureen.backend_options import SqliteOptions
from tureen.definitions import FeatureView
from tureen.errors import BackendUnavailableError, InvalidRequestError
from tureen.online.encoding import encode_rows
from tureen.online.protocol import ReadRequest, StoredRow

# SQLite's default limit on host parameters is 32766 since 3.32; stay well below it.
_MAX_IN = 500


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced: when its thread ends, the thread-local
    reference goes away and the connection is closed and freed instead of piling up."""


#: one row per (project, view): the token of the materialization that filled it
_MARKERS = "__tureen_markers"


class SqliteOnlineStore:
    def __init__(
        self,
        path: str | Path,
        project: str,
        busy_timeout_ms: int = 30_000,
        mmap_size_mb: int = 256,
        cache_size_mb: int = 32,
    ) -> None:
        self.path = Path(path)
        self.project = project
        self.pragmas = (
            f"PRAGMA busy_timeout = {int(busy_timeout_ms)}",
            f"PRAGMA mmap_size = {int(mmap_size_mb) * 1024 * 1024}",
            f"PRAGMA cache_size = {-int(cache_size_mb) * 1024}",
            "PRAGMA synchronous = NORMAL",
        )
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._closed = False
        self._sql: dict[tuple[str, int], str] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn()  # fail early (bad path, permissions), switch the file to WAL

    @classmethod
    def from_config(
        cls, options: dict[str, Any], repo_path: Path, project: str
    ) -> SqliteOnlineStore:
        opts = SqliteOptions.model_validate(options)
        path = Path(opts.path)
        if not path.is_absolute():
            path = Path(repo_path) / path
        return cls(path, project, opts.busy_timeout_ms, opts.mmap_size_mb, opts.cache_size_mb)

    # ---- connections ----------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise BackendUnavailableError(f"the SQLite online store {self.path} is closed.")
        try:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=512,
                factory=_Connection,
            )
            for pragma in self.pragmas:
                conn.execute(pragma)
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.Error as exc:
            raise BackendUnavailableError(
                f"cannot open the SQLite online store at {self.path}: {exc}. Check the path "
                "and its permissions (online_store.path in tureen.yaml)."
            ) from exc
        with self._lock:
            self._conns.add(conn)
        self._local.conn = conn
        return conn

    def table(self, view: FeatureView | str) -> str:
        """The quoted table name holding ``view``'s rows (names cannot contain quotes)."""
        name = view if isinstance(view, str) else view.name
        return f'"{self.project}:{name}"'

    # ---- materialization markers (KeepsMarkers) ------------------------------------------
    def location(self) -> str:
        return f"SQLite {self.path.resolve()}"

    def markers(self) -> dict[str, str]:
        try:
            rows = self._conn().execute(
                f"SELECT view, token FROM {_MARKERS} WHERE project = ?", (self.project,)
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return {}
            raise BackendUnavailableError(f"cannot read {self.path}: {exc}") from exc
        return {str(v): str(t) for v, t in rows}

    def set_marker(self, view: str, token: str) -> None:
        conn = self._conn()
        try:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {_MARKERS} (project TEXT NOT NULL, "
                         "view TEXT NOT NULL, token TEXT NOT NULL, PRIMARY KEY (project, view))")
            conn.execute(f"INSERT INTO {_MARKERS} VALUES (?, ?, ?) ON CONFLICT (project, view) "
                         "DO UPDATE SET token = excluded.token", (self.project, view, token))
        except sqlite3.Error as exc:
            raise BackendUnavailableError(f"cannot write to {self.path}: {exc}") from exc

    def count_rows(self, view: FeatureView) -> int:
        """How many entities ``view`` holds online (0 when it was never written)."""
        try:
            row = self._conn().execute(f"SELECT COUNT(*) FROM {self.table(view)}").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return 0
            raise BackendUnavailableError(f"cannot count rows in {self.path}: {exc}") from exc
        return int(row[0])

    # ---- writes ---------------------------------------------------------------------------
    def write(self, view: FeatureView, keys: Sequence[bytes], rows: pa.Table) -> int:
        self.write_counted(view, keys, rows)
        return len(keys)

    def write_counted(self, view: FeatureView, keys: Sequence[bytes], rows: pa.Table) -> int:
        """``write``; returns how many rows were stored (the others were older)."""
        if len(keys) != rows.num_rows:
            raise InvalidRequestError(
                f"write to {view.name!r}: {len(keys)} keys for {rows.num_rows} rows."
            )
        if not keys:
            return 0
        enc = encode_rows(view.features, rows)
        # Inserting in key order touches each B-tree page once (~3x faster than arrival
        # order for 100k rows). The sort is stable, so equal keys keep their write order.
        params = sorted(zip(keys, enc.event_us, enc.created_us, enc.values, strict=True),
                        key=itemgetter(0))
        t = self.table(view)
        sql = (
            f"INSERT INTO {t} (entity_key, event_ts, created_ts, value) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (entity_key) DO UPDATE SET event_ts = excluded.event_ts, "
            "created_ts = excluded.created_ts, value = excluded.value "
            "WHERE (excluded.event_ts, excluded.created_ts) >= (event_ts, created_ts)"
        )
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {t} (entity_key BLOB PRIMARY KEY, "
                    "event_ts INTEGER NOT NULL, created_ts INTEGER NOT NULL, "
                    "value BLOB NOT NULL) WITHOUT ROWID"
                )
                before = conn.total_changes
                conn.executemany(sql, params)
                stored = conn.total_changes - before
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise BackendUnavailableError(
                f"writing {len(keys)} rows of {view.name!r} to {self.path} failed: {exc}"
            ) from exc
        return stored

    # ---- reads ----------------------------------------------------------------------------
    def read(self, requests: Sequence[ReadRequest]) -> list[list[StoredRow | None]]:
        conn = self._conn()
        out: list[list[StoredRow | None]] = []
        for view, keys in requests:
            t = self.table(view)
            try:
                if len(keys) == 1:
                    row = conn.execute(
                        f"SELECT value FROM {t} WHERE entity_key = ?", (keys[0],)
                    ).fetchone()
                    out.append([row[0] if row is not None else None])
                else:
                    out.append(self._read_many(conn, t, keys))
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    raise BackendUnavailableError(
                        f"reading {view.name!r} from {self.path} failed: {exc}"
                    ) from exc
                out.append([None] * len(keys))
        return out

    def _read_many(
        self, conn: sqlite3.Connection, table: str, keys: Sequence[bytes]
    ) -> list[StoredRow | None]:
        unique = list(dict.fromkeys(keys))
        found: dict[bytes, bytes] = {}
        for i in range(0, len(unique), _MAX_IN):
            chunk = unique[i : i + _MAX_IN]
            sql = self._sql.get((table, len(chunk)))
            if sql is None:
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT entity_key, value FROM {table} WHERE entity_key IN ({marks})"
                self._sql[(table, len(chunk))] = sql
            found.update(conn.execute(sql, chunk).fetchall())
        get = found.get
        return [get(k) for k in keys]

    # ---- maintenance ----------------------------------------------------------------------
    def delete_views(self, views: Sequence[FeatureView]) -> None:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for v in views:
                conn.execute(f"DROP TABLE IF EXISTS {self.table(v)}")
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?",
                            (_MARKERS,)).fetchone():
                conn.executemany(f"DELETE FROM {_MARKERS} WHERE project = ? AND view = ?",
                                 [(self.project, v.name) for v in views])
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise BackendUnavailableError(f"dropping views from {self.path} failed: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns = list(self._conns)
            self._conns = weakref.WeakSet()
        for c in conns:
            c.close()
        self._local = threading.local()

    def __enter__(self) -> SqliteOnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
