"""Property: a read of several views at once (one statement, a packed aggregate, a
per-service vector) answers exactly what reading each view alone answers, and the
feature-service read answers what a brute-force oracle says (newest wins, per-view TTL,
statuses), after any writes in any order, older ones included."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tureen.definitions import Entity, FeatureService, FeatureView, Field, FileSource
from tureen.errors import BackendUnavailableError
from tureen.ingest import write_to_online_store
from tureen.online.encoding import RowReader
from tureen.online.keys import encoder_for
from tureen.online.packed import VectorRead
from tureen.online.protocol import OnlineStore
from tureen.online.response import FieldStatus
from tureen.online.retrieval import OnlineRetrieval
from tureen.online.sqlite_store import MIN_PACKED, SqliteOnlineStore
from tureen.online.vector_block import decode_block
from tureen.online.vectors import vector_specs
from tureen.registry.snapshot import RegistrySnapshot
from tureen.types import Float32, Int64, String

NOW = datetime(2026, 6, 1, tzinfo=UTC)
ACCOUNT = Entity("account", join_keys=["account_id"])
# Three views of one entity with different TTLs (hours); "c" holds a string (its rows
# differ in length, so it is never decoded as one array).
TTL_HOURS = {"a": 5, "b": 10, "c": 15}
VIEWS = {
    "a": FeatureView("a", [ACCOUNT], [Field("a1", Float32), Field("a2", Int64)],
                     FileSource("a.parquet", created_timestamp_column="created"),
                     ttl=timedelta(hours=5)),
    "b": FeatureView("b", [ACCOUNT], [Field("b1", Float32)],
                     FileSource("b.parquet", created_timestamp_column="created"),
                     ttl=timedelta(hours=10)),
    "c": FeatureView("c", [ACCOUNT], [Field("c1", String)],
                     FileSource("c.parquet", created_timestamp_column="created"),
                     ttl=timedelta(hours=15)),
}
FEATURES = {"a": ["a1", "a2"], "b": ["b1"], "c": ["c1"]}
SERVICES = {"numbers": FeatureService("numbers", [VIEWS["a"], VIEWS["b"]], online_vector=True),
            "all": FeatureService("all", list(VIEWS.values()), online_vector=True)}
SNAP = RegistrySnapshot(project="svc", entities={"account": ACCOUNT}, feature_views=VIEWS,
                        feature_services=SERVICES)

# (view, account, hours ago, created seconds, value or None)
WRITE = st.tuples(st.sampled_from(sorted(VIEWS)), st.integers(0, 70), st.integers(0, 20),
                  st.integers(0, 2), st.none() | st.integers(-1000, 1000))
Oracle = dict[tuple[str, int], tuple[int, int, int | None]]


def _row(view: str, account: int, hours: int, created: int, x: int | None) -> dict[str, Any]:
    row: dict[str, Any] = {"account_id": account, "event_timestamp": NOW - timedelta(hours=hours),
                           "created": NOW + timedelta(seconds=created)}
    for f in FEATURES[view]:
        row[f] = None if x is None else (str(x) if f == "c1" else x)
    return row


def apply_writes(store: OnlineStore, batches: Sequence[Sequence[tuple[Any, ...]]],
                 oracle: Oracle | None = None) -> Oracle:
    """Write each batch (one write per view it touches, in order) and return the oracle:
    per (view, account) the newest (-hours, created, value); a later write wins a tie."""
    oracle = {} if oracle is None else dict(oracle)
    for batch in batches:
        for name in sorted({w[0] for w in batch}):
            mine = [w for w in batch if w[0] == name]
            write_to_online_store(SNAP, store, name, [_row(*w) for w in mine])
            for _, a, h, c, x in mine:
                if (name, a) not in oracle or (-h, c) >= oracle[(name, a)][:2]:
                    oracle[(name, a)] = (-h, c, x)
    return oracle


def expected(oracle: Oracle, service: str, probes: Sequence[int]
             ) -> dict[str, list[tuple[Any, FieldStatus]]]:
    out: dict[str, list[tuple[Any, FieldStatus]]] = {}
    for view in [v.name for v in SERVICES[service].features if isinstance(v, FeatureView)]:
        for f in FEATURES[view]:
            col = out[f] = []
            for a in probes:
                got = oracle.get((view, a))
                if got is None:
                    col.append((None, FieldStatus.NOT_FOUND))
                elif -got[0] > TTL_HOURS[view]:
                    col.append((None, FieldStatus.OUTSIDE_MAX_AGE))
                elif got[2] is None:
                    col.append((None, FieldStatus.NULL_VALUE))
                else:
                    col.append((str(got[2]) if f == "c1" else got[2], FieldStatus.PRESENT))
    return out


def check_store(store: OnlineStore, oracle: Oracle, probes: list[int]) -> None:
    """Every multi-view read equals the views read one by one; the service reads equal
    the oracle."""
    enc = encoder_for(VIEWS["a"].key_fields)
    keys = [enc.encode_one(a) for a in probes]
    for service in SERVICES.values():
        views = [v for v in service.features if isinstance(v, FeatureView)]
        together = store.read([(v, keys) for v in views])
        alone = [store.read([(v, keys)])[0] for v in views]
        assert [list(r) for r in together] == [list(r) for r in alone]
        resp = OnlineRetrieval(store, lambda: SNAP, clock=NOW.timestamp).get_online_features(
            service.name, {"account_id": probes})
        values, statuses = resp.to_dict(), resp.statuses
        for f, col in expected(oracle, service.name, probes).items():
            assert values[f] == [v for v, _ in col], f
            assert statuses[f] == [s for _, s in col], f


def with_sqlite(test: Callable[[SqliteOnlineStore], None]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteOnlineStore(Path(tmp) / "o.db", "svc")
        try:
            test(store)
        finally:
            store.close()


def vector_tables(store: SqliteOnlineStore) -> list[str]:
    return [r[0] for r in store._conn().execute(
        "SELECT name FROM sqlite_master WHERE name LIKE '%__vector:%'")]


def reads_vector(store: SqliteOnlineStore, probes: list[int]) -> bool:
    """Whether a read of the service "all" is answered from its vector alone."""
    enc = encoder_for(VIEWS["a"].key_fields)
    requests = [(v, [enc.encode_one(a) for a in probes]) for v in VIEWS.values()]
    store.read(requests)  # the first read after a change looks at the catalog
    seen: list[str] = []
    store._conn().set_trace_callback(seen.append)
    store.read(requests)
    store._conn().set_trace_callback(None)
    data = [sql for sql in seen if "sqlite_master" not in sql]  # views never written
    return len(data) == 1 and "__vector:all" in data[0]


PROBES = st.lists(st.integers(0, 80), min_size=1, max_size=150)
BATCHES = st.lists(st.lists(WRITE, min_size=1, max_size=60), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(BATCHES, PROBES, st.sampled_from(["views", "vector_first", "vector_after"]))
def test_multi_view_reads_match_single_view_reads_and_the_oracle(
        batches: list[list[tuple[Any, ...]]], probes: list[int], mode: str) -> None:
    """``vector_first``: the vectors exist before any write (every write keeps them);
    ``vector_after``: built from what the views hold after the first batch."""
    def run(store: SqliteOnlineStore) -> None:
        if mode == "vector_first":
            store.sync_vectors(vector_specs(SNAP))
        oracle = apply_writes(store, batches[:1])
        if mode == "vector_after":
            store.sync_vectors(vector_specs(SNAP))
        oracle.update(apply_writes(store, batches[1:], oracle))
        if mode != "views":
            assert reads_vector(store, probes)
        check_store(store, oracle, probes)

    with_sqlite(run)


@pytest.mark.parametrize("vector", [False, True])
@pytest.mark.parametrize("n", [1, 7, MIN_PACKED, 300, 2500])
def test_every_batch_size_path(n: int, vector: bool) -> None:
    """One key, a small batch, the packed batch and batches of one and several chunks."""
    writes = [(v, a, a % 12, 0, a) for v in VIEWS for a in range(0, 400, 3)]

    def run(store: SqliteOnlineStore) -> None:
        if vector:
            store.sync_vectors(vector_specs(SNAP))
        check_store(store, apply_writes(store, [writes]), [(7 * i) % 401 for i in range(n)])

    with_sqlite(run)


@pytest.mark.parametrize("vector", [False, True])
def test_ties_go_to_the_later_write_and_older_writes_are_ignored(vector: bool) -> None:
    batches = [[("a", 1, 2, 1, 5), ("b", 1, 2, 1, 5)], [("a", 1, 2, 1, 6)],  # a tie: 6 wins
               [("a", 1, 3, 2, 7), ("b", 1, 4, 0, 8)],  # older: ignored
               [("b", 1, 2, 2, 9)]]  # same event, later created: wins

    def run(store: SqliteOnlineStore) -> None:
        if vector:
            store.sync_vectors(vector_specs(SNAP))
        oracle = apply_writes(store, batches)
        assert (oracle[("a", 1)][2], oracle[("b", 1)][2]) == (6, 9)
        assert reads_vector(store, [1]) is vector
        check_store(store, oracle, [1, 2])

    with_sqlite(run)


def test_a_failed_write_leaves_neither_the_view_nor_the_vector_changed() -> None:
    """The view's table and its vector slot are written in one transaction: a failure in
    the vector's part rolls the view's part back too."""
    def run(store: SqliteOnlineStore) -> None:
        store.sync_vectors(vector_specs(SNAP))
        oracle = apply_writes(store, [[("a", a, 5, 0, a) for a in range(10)]])
        for table in vector_tables(store):
            store._conn().execute(
                f'CREATE TRIGGER "boom:{table}" BEFORE UPDATE ON "{table}" '
                "WHEN old.entity_id = 7 BEGIN SELECT RAISE(ABORT, 'boom'); END")
        with pytest.raises(BackendUnavailableError, match="boom"):
            apply_writes(store, [[("a", a, 1, 0, -a) for a in range(10)]])
        check_store(store, oracle, list(range(12)))
        assert reads_vector(store, list(range(12)))

    with_sqlite(run)


def test_deleting_a_view_drops_its_vectors_and_a_changed_service_gets_a_new_one() -> None:
    def run(store: SqliteOnlineStore) -> None:
        store.sync_vectors(vector_specs(SNAP))
        oracle = apply_writes(store, [[(v, a, 1, 0, a) for v in VIEWS for a in range(60)]])
        before = vector_tables(store)
        store.sync_vectors(vector_specs(SNAP))  # unchanged: kept as it is
        assert vector_tables(store) == before
        other = SqliteOnlineStore(store.path, "svc")  # another process
        other.delete_views([VIEWS["c"]])
        other.close()
        assert len(vector_tables(store)) == 1  # "all" held c; "numbers" did not
        check_store(store, {k: v for k, v in oracle.items() if k[0] != "c"}, list(range(70)))
        # The service now reads a and c only: a new vector, built from what they hold.
        snap = RegistrySnapshot(project="svc", entities={"account": ACCOUNT},
                                feature_views=VIEWS, feature_services={"all": FeatureService(
                                    "all", [VIEWS["a"], VIEWS["c"]], online_vector=True)})
        store.sync_vectors(vector_specs(snap))
        assert len(vector_tables(store)) == 1 and vector_tables(store) != before
        enc = encoder_for(VIEWS["a"].key_fields)
        keys = [enc.encode_one(a) for a in range(70)]
        requests = [(VIEWS["a"], keys), (VIEWS["c"], keys)]
        assert [list(r) for r in store.read(requests)] == [list(store.read([r])[0])
                                                            for r in requests]

    with_sqlite(run)


@pytest.mark.parametrize("case", ["all_fresh", "one_expired", "one_null", "one_missing",
                                  "older_layout", "few_keys"])
def test_a_whole_vector_read_decoded_at_once_answers_as_the_views_do(case: str) -> None:
    """The numbers-only service read from its vector in one piece (every view decoded at
    once, ``vector_block``) or, off the fast case, view by view: the same response as the
    same writes read from the views alone, values, types, statuses and event times."""
    accounts = list(range(0, 120))
    writes = [(v, a, 1, 0, a) for v in ("a", "b") for a in accounts]
    if case == "one_expired":
        writes.append(("a", 7, 6, 1, 70))  # older: ignored, so write it as newest below
        writes = [w for w in writes if w[:2] != ("a", 7)] + [("a", 7, 6, 0, 70)]
    if case == "one_null":
        writes.append(("b", 9, 0, 0, None))
    if case == "one_missing":
        writes = [w for w in writes if w[:2] != ("b", 11)]
    probes = [3, 3, 7, 9, 11, 50, 99, 0, 1, 2] * 5 if case != "few_keys" else [3, 7, 9]
    if case == "older_layout":  # a row of "a" written before it gained a feature
        old_a = FeatureView("a", [ACCOUNT], [Field("a1", Float32)], VIEWS["a"].source,
                            ttl=timedelta(hours=5))
        old_snap = RegistrySnapshot(project="svc", entities={"account": ACCOUNT},
                                    feature_views={**VIEWS, "a": old_a})

    def answers(vector: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}

        def run(store: SqliteOnlineStore) -> None:
            if vector:
                store.sync_vectors(vector_specs(SNAP))
            apply_writes(store, [writes])
            if case == "older_layout":
                write_to_online_store(old_snap, store, "a", [
                    {"account_id": 3, "a1": 1.5, "event_timestamp": NOW,
                     "created": NOW + timedelta(seconds=9)}])
            rt = OnlineRetrieval(store, lambda: SNAP, clock=NOW.timestamp)
            if vector and case == "all_fresh":  # read in one piece, decoded at once
                keys = [encoder_for(VIEWS["a"].key_fields).encode_one(a) for a in probes]
                rows = store.read([(VIEWS["a"], keys), (VIEWS["b"], keys)])
                assert isinstance(rows, VectorRead)
                assert decode_block([RowReader(["a1", "a2"]), RowReader(["b1"])], [0, 0],
                                    rows.block, 0) is not None
            resp = rt.get_online_features("numbers", {"account_id": probes})
            out.update(values=resp.to_dict(), statuses=resp.statuses,
                       types={k: type(v) for k, v in resp.to_dict().items()},
                       arrow=resp.to_arrow().to_pylist(), feast=resp.to_feast_json(),
                       times=resp.event_timestamps, raw=resp.feast_json_bytes(),
                       numpy={k: (v.dtype, repr(v.tolist())) for k, v in resp.to_numpy().items()})

        with_sqlite(run)
        return out

    assert answers(True) == answers(False)
