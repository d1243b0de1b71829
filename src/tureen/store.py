"""FeatureStore: the facade a user holds. It only composes small services.

It reads ``tureen.yaml``, builds each backend lazily from the table in ``tureen.backends``
(so reading online features never starts an offline engine), and delegates:
definitions → ``registry.service``, training sets → ``offline.retrieval``, online reads →
``online.retrieval``, writes → ``ingest`` and ``materialize``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from tureen.auth.access import authorize
from tureen.auth.policy import Action
from tureen.backends import load_backend
from tureen.config import RepoConfig, load_config
from tureen.definitions import (
    Entity,
    FeatureService,
    FeatureView,
    FileSource,
    OnDemandFeatureView,
    PushSource,
    StreamFeatureView,
    source_of,
)
from tureen.errors import ConfigError, InvalidRequestError, NotFoundError
from tureen.registry.service import Plan, Registry
from tureen.registry.snapshot import RegistrySnapshot
from tureen.repo_loader import load_definitions
from tureen.types import source_type_compatible

if TYPE_CHECKING:
    import pandas as pd

    from tureen.ingest import WriteResult
    from tureen.offline.protocol import OfflineEngine
    from tureen.offline.retrieval import RetrievalJob
    from tureen.online.protocol import OnlineStore
    from tureen.online.response import OnlineResponse
    from tureen.online.retrieval import OnlineRetrieval
    from tureen.streaming.http_ingest import HttpIngestion, Receipt
    from tureen.watermarks import ViewState

log = logging.getLogger(__name__)

Features = Sequence[str] | FeatureService | str
EntityRows = Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]
PushTo = Literal["online", "offline", "online_and_offline"]
Progress = Callable[[str, int, int], None]


class FeatureStore:
    """``FeatureStore("path/to/repo")``: everything a feature repo can do, from Python."""

    def __init__(self, repo_path: str | Path = ".", config: RepoConfig | None = None) -> None:
        self.repo_path = Path(repo_path).resolve()
        self.config = config if config is not None else load_config(self.repo_path)
        self.project = self.config.project
        self._duckdb: OfflineEngine | None = None  # schema checks (see _schema_reader)

    def _backend(self, section: str) -> Any:
        return load_backend(section, getattr(self.config, section), self.repo_path, self.project)

    @cached_property
    def registry(self) -> Registry:
        return Registry(self._backend("registry"), self.project)

    @cached_property
    def offline(self) -> OfflineEngine:
        engine: OfflineEngine = self._backend("offline_store")
        return engine

    @cached_property
    def online(self) -> OnlineStore:
        store: OnlineStore = self._backend("online_store")
        return store

    @cached_property
    def online_retrieval(self) -> OnlineRetrieval:
        from tureen.online.retrieval import OnlineRetrieval

        return OnlineRetrieval(self.online, self.registry.snapshot)

    def snapshot(self) -> RegistrySnapshot:
        return self.registry.snapshot()

    def close(self) -> None:
        self.stop_ingestion()
        for name in ("online", "offline"):
            backend = self.__dict__.pop(name, None)
            if backend is not None:
                backend.close()
        self.__dict__.pop("online_retrieval", None)
        if self._duckdb is not None:
            self._duckdb.close()
            self._duckdb = None

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- definitions -------------------------------------------------------------------------
    def list_entities(self) -> list[Entity]:
        return list(self.snapshot().entities.values())

    def list_feature_views(self) -> list[FeatureView]:
        return list(self.snapshot().feature_views.values())

    def list_on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        return list(self.snapshot().on_demand_views.values())

    def list_feature_services(self) -> list[FeatureService]:
        return list(self.snapshot().feature_services.values())

    def get_feature_view(self, name: str) -> FeatureView:
        return self.snapshot().feature_view(name)

    def get_feature_service(self, name: str) -> FeatureService:
        return self.snapshot().feature_service(name)

    def check_source(self, view: FeatureView) -> None:
        """Raise ConfigError if ``view``'s schema does not match its source file."""
        if isinstance(view, StreamFeatureView):  # its event log, once events arrived
            self.check_source(view.input_view)
            return
        source = source_of(view)
        try:
            schema = self._schema_reader(source).source_schema(source)
        except NotFoundError as exc:
            if isinstance(view.source, PushSource):
                log.info("push source %s has no offline rows yet", view.source.name)
                return
            raise ConfigError(f"feature view {view.name!r}: {exc}") from exc
        cols = {f.name: f.type for f in schema}
        want = [(view.source.timestamp_field, None), *((k.name, k.dtype) for k in view.key_fields)]
        if view.source.created_timestamp_column:
            want.append((view.source.created_timestamp_column, None))
        problems = []
        for name, dtype in [*want, *((f.name, f.dtype) for f in view.features)]:
            if name not in cols:
                problems.append(f"column {name!r} is missing")
            elif dtype is not None and not source_type_compatible(dtype, cols[name]):
                problems.append(f"column {name!r} is {cols[name]} but the schema says {dtype}")
        if problems:
            raise ConfigError(
                f"feature view {view.name!r} does not match its source {source.path}: "
                + "; ".join(problems)
                + f". The source has columns: {', '.join(cols)}. Fix the schema, the "
                "field_mapping, or the data."
            )

    def _schema_reader(self, source: FileSource) -> OfflineEngine:
        """What reads a source's schema for plan/apply: DuckDB (in process, milliseconds) for
        files it can read, so checking definitions never starts Spark; the configured
        engine for the URLs only it reads (hdfs://, s3a://, ...)."""
        if self.config.offline_store.type == "duckdb" or (
            "://" in source.path
            and not source.path.startswith(
                ("file://", "s3://", "gs://", "az://", "abfs://", "memory://")
            )
        ):
            return self.offline
        if self._duckdb is None:
            from tureen.offline.duckdb_engine import DuckDBEngine

            self._duckdb = DuckDBEngine(self.repo_path)
        return self._duckdb

    def plan(self) -> Plan:
        return self.registry.plan(load_definitions(self.repo_path), self.check_source)

    def apply(self) -> Plan:
        """Validate the repo's definitions and store them; removed views lose online data."""
        authorize(Action.ADMIN, self.project)
        before = self.registry.snapshot(fresh=True)
        plan = self.registry.apply(load_definitions(self.repo_path), self.check_source)
        removed = [before.feature_views[c.name] for c in plan.of("delete", "feature view")]
        if removed:
            self.online.delete_views(removed)
        self._sync_vectors(before)
        return plan

    def _sync_vectors(self, before: RegistrySnapshot | None = None) -> None:
        """Keep the online store's per-service vectors in step with the registry
        (``tureen.online.vectors``); nothing unless a service asks, or asked, for one."""
        from tureen.online import vectors

        now = self.registry.snapshot(fresh=True)
        if vectors.asks_for_vectors(now) or (before and vectors.asks_for_vectors(before)):
            vectors.sync(self.online, now)

    def teardown(self) -> None:
        """Delete every view's online data and the registry itself."""
        authorize(Action.ADMIN, self.project)
        views = list(self.snapshot().feature_views.values())
        if views:
            self.online.delete_views(views)
        self.registry.delete()

    # ---- offline -----------------------------------------------------------------------------
    def get_historical_features(
        self,
        entity_df: pd.DataFrame | pa.Table | str | Path | None = None,
        features: Features | None = None,
        full_feature_names: bool = False,
        *,
        feature_service: FeatureService | str | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        entity_filter: Mapping[str, Sequence[Any]] | None = None,
        timestamp_column: str | None = None,
    ) -> RetrievalJob:
        """A point-in-time-correct training set (see ``tureen.offline.retrieval``): for the
        rows of ``entity_df``, or, without it, for every feature row version with
        ``start_date <= event time < end_date`` (``entity_filter``: {join_key: [values]}).
        ``timestamp_column``: the entity rows' time column (default: ``event_timestamp``, or
        their only timestamp-typed column)."""
        from tureen.offline.retrieval import get_historical_features

        authorize(Action.READ_FEATURES, self.project)
        return get_historical_features(
            self.offline,
            self.snapshot(),
            entity_df,
            _pick(features, feature_service),
            full_feature_names,
            start_date=start_date,
            end_date=end_date,
            entity_filter=entity_filter,
            timestamp_column=timestamp_column,
        )

    # ---- online ------------------------------------------------------------------------------
    def get_online_features(
        self,
        features: Features | None = None,
        entity_rows: EntityRows | None = None,
        full_feature_names: bool = False,
        *,
        feature_service: FeatureService | str | None = None,
    ) -> OnlineResponse:
        authorize(Action.READ_FEATURES, self.project)
        return self.online_retrieval.get_online_features(
            _pick(features, feature_service), _rows(entity_rows), full_feature_names
        )

    async def get_online_features_async(
        self,
        features: Features | None = None,
        entity_rows: EntityRows | None = None,
        full_feature_names: bool = False,
        *,
        feature_service: FeatureService | str | None = None,
        enforce_ttl: bool = True,
    ) -> OnlineResponse:
        authorize(Action.READ_FEATURES, self.project)
        if features is None or feature_service is not None or entity_rows is None:
            features, entity_rows = _pick(features, feature_service), _rows(entity_rows)
        return await self.online_retrieval.get_online_features_async(
            features,
            entity_rows,
            full_feature_names,
            enforce_ttl=enforce_ttl,
        )

    # ---- writes ------------------------------------------------------------------------------
    @cached_property
    def streams(self) -> HttpIngestion:
        """Stream ingestion of push sources that feed stream views (built on first use)."""
        from tureen.streaming.http_ingest import HttpIngestion
        from tureen.streaming.service import StreamService

        return HttpIngestion(StreamService(self))

    def ingest(self, source_name: str, events: Any, wait: str = "online") -> Receipt:
        """Send events of push source ``source_name`` through its stream views (windows,
        dead letters, offline log); ``wait`` is none, online or durable. A DataFrame or a
        list of dicts."""
        authorize(Action.WRITE_FEATURES, f"{self.project}/{source_name}")
        if hasattr(events, "to_dict"):  # a pandas DataFrame (pandas is imported lazily)
            events = events.to_dict("records")
        receipt: Receipt = self.streams.ingest(source_name, events, wait)
        return receipt

    def stop_ingestion(self) -> None:
        """Write what HTTP ingestion still buffers (offline log, queued ``wait=none`` events)
        and stop its threads; the next ``ingest`` starts them again."""
        streams = self.__dict__.pop("streams", None)
        if streams is not None:
            streams.close()

    def push(
        self, push_source_name: str, df: Any, to: PushTo = "online", *, wait: str | None = None
    ) -> WriteResult:
        """Rows pushed (an int) with ``ignored_older``: per view, rows the online store kept
        a newer value for, and ``receipt``: the ingestion id, what is visible or durable and
        the event -> visible lag. A push source feeding stream views goes through the stream
        path (``ingest``: the offline log is always written; ``wait`` says when to return,
        by default ``online``, or ``durable`` when ``to`` names offline); other push sources
        are written before the call returns, whatever ``wait`` says."""
        authorize(Action.WRITE_FEATURES, f"{self.project}/{push_source_name}")
        from tureen.ingest import WriteResult, push
        from tureen.streaming.http_ingest import check_wait, plain_receipt

        if wait is not None:
            check_wait(wait)
        _, views = self.snapshot().push_source(push_source_name)
        if any(isinstance(v, StreamFeatureView) for v in views):
            if wait is None:
                wait = "online" if to == "online" else "durable"
            receipt = self.ingest(push_source_name, df, wait)
            return WriteResult(receipt.accepted, receipt=receipt)
        # the offline engine (Spark: seconds to start) only when rows go offline
        engine = self.offline if to in ("offline", "online_and_offline") else None
        store = self.online if to in ("online", "online_and_offline") else None
        started = time.time()
        result = push(
            self.snapshot(),
            engine,
            store,
            push_source_name,
            df,
            to,
            max_clock_skew=self._max_clock_skew(),
        )
        result.receipt = plain_receipt(push_source_name, to, wait, result, started)
        return result

    def write_to_online_store(self, feature_view_name: str, df: Any) -> WriteResult:
        authorize(Action.WRITE_FEATURES, self.project)
        from tureen.ingest import write_to_online_store

        return write_to_online_store(
            self.snapshot(),
            self.online,
            feature_view_name,
            df,
            max_clock_skew=self._max_clock_skew(),
        )

    def _max_clock_skew(self) -> timedelta | None:
        seconds = self.config.ingest.max_clock_skew_seconds
        return None if seconds is None else timedelta(seconds=seconds)

    def materialize(
        self,
        start_date: datetime,
        end_date: datetime,
        feature_views: Sequence[str] | None = None,
        progress: Progress | None = None,
    ) -> list[Any]:
        from tureen.materialize import materialize

        authorize(Action.WRITE_FEATURES, self.project)
        start, end = _utc(start_date), _utc(end_date)
        if start >= end:
            raise InvalidRequestError(
                f"materialize: start {start.isoformat()} is not before end {end.isoformat()}."
            )
        self._sync_vectors()
        done: list[Any] = materialize(
            self.snapshot(), self.offline, self.online, start, end, feature_views, progress
        )
        for r in done:
            self.registry.record_materialization(r.view, r.start, r.end, r.store, r.token)
        return done

    def materialize_incremental(
        self,
        end_date: datetime,
        feature_views: Sequence[str] | None = None,
        progress: Progress | None = None,
    ) -> list[Any]:
        from tureen.materialize import materialize_incremental

        authorize(Action.WRITE_FEATURES, self.project)
        self._sync_vectors()
        done: list[Any] = materialize_incremental(
            self.snapshot(), self.offline, self.online, _utc(end_date), feature_views, progress
        )
        for r in done:
            if r.note:
                log.warning("%s", r.note)
            self.registry.record_materialization(r.view, r.start, r.end, r.store, r.token)
        return done

    def online_state(self) -> list[ViewState]:
        """Per online view: materialized into this online store, never, or lost since
        (``tureen.watermarks``); ``/health`` and ``tureen features list`` report it."""
        from tureen.watermarks import states

        authorize(Action.READ_FEATURES, self.project)
        return states(self.registry.snapshot(fresh=True), self.online)


def _pick(features: Features | None, service: FeatureService | str | None) -> Features:
    if features is not None and service is not None:
        raise InvalidRequestError("pass either features or feature_service, not both.")
    chosen = features if features is not None else service
    if chosen is None:
        raise InvalidRequestError(
            "no features requested: pass features=['view:feature', ...] or feature_service=NAME."
        )
    return chosen


def _rows(entity_rows: EntityRows | None) -> EntityRows:
    if entity_rows is None:
        raise InvalidRequestError(
            "get_online_features needs entity_rows: [{'join_key': value}, ...] or "
            "{'join_key': [values]}."
        )
    return entity_rows


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
