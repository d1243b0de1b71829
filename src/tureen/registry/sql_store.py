"""The shared registry store: one row per project in a SQL database (PostgreSQL, SQLite).

Compare-and-swap is a single statement, so it is atomic on any SQL database::

    UPDATE tureen_registry SET document=?, version=v+1 WHERE project=? AND version=v

and the first save of a project is an INSERT guarded by the primary key. A statement that
touches no row (or hits the key) means another writer won: ConflictError, nothing stored. The
history record is written in the same transaction as the document.

``postgresql://`` URLs use the psycopg 3 driver; relative SQLite paths are taken from the repo.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.pool import NullPool

from tureen.backend_options import DEFAULT_SQL_TABLE, SqlRegistryOptions
from tureen.errors import (
    BackendUnavailableError,
    ConfigError,
    ConflictError,
    RegistryCorruptError,
)

DEFAULT_TABLE = DEFAULT_SQL_TABLE


def normalize_url(url: str, repo_path: Path | None = None) -> URL:
    """``postgresql://`` → psycopg 3 driver; a relative SQLite path is resolved in the repo."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(
            f"registry.url {url!r} is not a database URL ({exc}). Use e.g. "
            "postgresql://user@host:5432/dbname or sqlite:///data/registry.db."
        ) from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        db = Path(parsed.database or "").expanduser()
        if not db.is_absolute() and repo_path is not None:
            db = repo_path / db
        db.parent.mkdir(parents=True, exist_ok=True)
        parsed = parsed.set(database=str(db))
    return parsed


class SqlRegistryStore:
    def __init__(
        self,
        url: str | URL,
        project: str,
        *,
        cache_ttl_seconds: float = 5.0,
        table: str = DEFAULT_TABLE,
        connect_timeout_seconds: int = 5,
    ) -> None:
        self.url = normalize_url(url) if isinstance(url, str) else url
        self.project = project
        self.cache_ttl_seconds = cache_ttl_seconds
        self._engine = _create_engine(self.url, connect_timeout_seconds)
        meta = sa.MetaData()
        self._docs = sa.Table(
            table, meta,
            sa.Column("project", sa.String(200), primary_key=True),
            sa.Column("version", sa.BigInteger, nullable=False),
            sa.Column("document", sa.Text, nullable=False),
            sa.Column("updated_at", sa.String(40), nullable=False),
        )
        self._hist = sa.Table(
            f"{table}_history", meta,
            sa.Column("project", sa.String(200), primary_key=True),
            sa.Column("version", sa.BigInteger, primary_key=True),
            sa.Column("at", sa.String(40), nullable=False),
            sa.Column("summary", sa.Text, nullable=False),
        )
        self._uses = sa.Table(
            f"{table}_token_uses", meta,
            sa.Column("project", sa.String(200), primary_key=True),
            sa.Column("token_id", sa.String(64), primary_key=True),
            sa.Column("last_used_at", sa.String(40), nullable=False),
        )
        self._meta = meta
        self._tables_ready = False

    @classmethod
    def from_config(
        cls, options: Mapping[str, Any], repo_path: Path, project: str
    ) -> SqlRegistryStore:
        opts = SqlRegistryOptions.model_validate(dict(options))
        return cls(
            normalize_url(opts.url, repo_path),
            project,
            cache_ttl_seconds=opts.cache_ttl_seconds,
            table=opts.table,
            connect_timeout_seconds=opts.connect_timeout_seconds,
        )

    def describe(self) -> str:
        return f"{self.url.render_as_string(hide_password=True)} (project {self.project!r})"

    # ---- connection handling ------------------------------------------------------------
    @contextmanager
    def _connect(self, write: bool) -> Iterator[Connection]:
        try:
            self._ensure_tables()
            with self._engine.begin() if write else self._engine.connect() as conn:
                yield conn
        except OperationalError as exc:
            raise self._unavailable(exc) from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise self._unavailable(exc) from exc
            raise

    def _unavailable(self, exc: DBAPIError) -> BackendUnavailableError:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        if self.url.get_backend_name() == "sqlite":
            where = f"the SQLite file {self.url.database}"
            todo = "check that the file's folder exists and is writable, then retry"
        else:
            where = f"{self.url.host or 'localhost'}:{self.url.port or 'default port'}"
            todo = ("check that the database server is running and reachable, and that "
                    "registry.url in tureen.yaml (or TUREEN_REGISTRY__URL) is right; then retry")
        return BackendUnavailableError(
            f"cannot reach the SQL registry at {where} "
            f"({self.url.render_as_string(hide_password=True)}): {reason}. {todo}."
        )

    def _ensure_tables(self) -> None:
        if self._tables_ready:
            return
        try:
            self._meta.create_all(self._engine, checkfirst=True)
        except (IntegrityError, sa.exc.ProgrammingError, OperationalError):
            # Another process created the tables between our check and our CREATE
            # (PostgreSQL reports it as IntegrityError/ProgrammingError, SQLite as
            # OperationalError "table ... already exists"). The second try sees them; if the
            # database is really unreachable, it raises again and _connect says so.
            self._meta.create_all(self._engine, checkfirst=True)
        self._tables_ready = True

    # ---- RegistryStore ------------------------------------------------------------------
    def load(self) -> dict[str, Any] | None:
        with self._connect(write=False) as conn:
            row = conn.execute(
                sa.select(self._docs.c.version, self._docs.c.document)
                .where(self._docs.c.project == self.project)
            ).first()
        if row is None:
            return None
        try:
            doc = json.loads(row.document)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise RegistryCorruptError(
                f"the registry of project {self.project!r} in {self.describe()} is not valid "
                f"JSON ({exc}). It was left untouched. Restore it from a database backup, or "
                f"delete its row (DELETE FROM {self._docs.name} WHERE project = "
                f"'{self.project}') and run `tureen apply` to rebuild it."
            ) from exc
        doc["version"] = int(row.version)
        return doc

    def save(self, document: Mapping[str, Any], expected_version: int, summary: str) -> None:
        new_version = expected_version + 1
        doc = dict(document)
        doc["version"] = new_version
        text = json.dumps(doc)
        now = datetime.now(UTC).isoformat()
        try:
            with self._connect(write=True) as conn:
                if expected_version == 0:
                    conn.execute(sa.insert(self._docs).values(
                        project=self.project, version=new_version, document=text, updated_at=now,
                    ))
                else:
                    result = conn.execute(
                        sa.update(self._docs)
                        .where(self._docs.c.project == self.project,
                               self._docs.c.version == expected_version)
                        .values(version=new_version, document=text, updated_at=now)
                    )
                    if result.rowcount != 1:
                        raise self._conflict(conn, expected_version)
                conn.execute(sa.insert(self._hist).values(
                    project=self.project, version=new_version, at=now, summary=summary,
                ))
        except IntegrityError as exc:
            # The primary key refused a second "first save" (or a duplicate history row):
            # another writer stored this version first. The transaction was rolled back.
            raise self._conflict(None, expected_version) from exc

    def _conflict(self, conn: Connection | None, expected: int) -> ConflictError:
        current: int | None = None
        if conn is not None:
            current = conn.execute(
                sa.select(self._docs.c.version).where(self._docs.c.project == self.project)
            ).scalar()
        now = "nothing stored" if conn is not None and current is None else (
            f"now version {current}" if current is not None else "a newer version")
        return ConflictError(
            f"the registry of project {self.project!r} at {self.describe()} changed while you "
            f"worked ({now}, expected {expected}): another apply won. Run the command again "
            "to apply on top of it."
        )

    def history(self) -> list[dict[str, Any]]:
        with self._connect(write=False) as conn:
            rows = conn.execute(
                sa.select(self._hist.c.version, self._hist.c.at, self._hist.c.summary)
                .where(self._hist.c.project == self.project)
                .order_by(self._hist.c.version)
            ).all()
        return [{"version": int(r.version), "at": r.at, "summary": r.summary} for r in rows]

    def token_uses(self) -> dict[str, str]:
        """When each API token was last used (ISO timestamps)."""
        with self._connect(write=False) as conn:
            rows = conn.execute(
                sa.select(self._uses.c.token_id, self._uses.c.last_used_at)
                .where(self._uses.c.project == self.project)
            ).all()
        return {r.token_id: r.last_used_at for r in rows}

    def record_token_uses(self, uses: Mapping[str, str]) -> None:
        u = self._uses
        for token_id, at in uses.items():
            for _attempt in range(3):
                try:
                    with self._connect(write=True) as conn:
                        done = conn.execute(
                            sa.update(u).where(u.c.project == self.project,
                                               u.c.token_id == token_id,
                                               u.c.last_used_at < at)
                            .values(last_used_at=at)
                        ).rowcount
                        if not done and conn.execute(
                            sa.select(u.c.token_id).where(u.c.project == self.project,
                                                          u.c.token_id == token_id)
                        ).first() is None:
                            conn.execute(sa.insert(u).values(
                                project=self.project, token_id=token_id, last_used_at=at))
                    break
                except IntegrityError:  # another server inserted it first: update instead
                    continue

    def delete(self) -> None:
        with self._connect(write=True) as conn:
            conn.execute(sa.delete(self._docs).where(self._docs.c.project == self.project))
            conn.execute(sa.delete(self._hist).where(self._hist.c.project == self.project))
            conn.execute(sa.delete(self._uses).where(self._uses.c.project == self.project))

    def close(self) -> None:
        self._engine.dispose()


def _create_engine(url: URL, connect_timeout: int) -> Engine:
    backend = url.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "postgresql":
        connect_args["connect_timeout"] = connect_timeout
    elif backend == "sqlite":
        connect_args["timeout"] = 30.0  # wait for a concurrent writer's lock, do not fail
    # No pool: the registry is read once per cache TTL, a fresh connection per call is cheap,
    # survives server restarts and forked server workers, and never leaks an open connection.
    return sa.create_engine(url, poolclass=NullPool, connect_args=connect_args)
