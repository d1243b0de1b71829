"""push / write_to_online_store: validate everything first, store nothing on any error."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from tests.unit.online.conftest import NOW

from tureen.definitions import Entity, FeatureView, Field, FileSource, PushSource
from tureen.errors import InvalidRequestError, NotFoundError
from tureen.ingest import push, write_to_online_store
from tureen.online.retrieval import OnlineRetrieval
from tureen.online.sqlite_store import SqliteOnlineStore
from tureen.registry.snapshot import RegistrySnapshot
from tureen.types import Array, Float32, Int32, Int64, String

duckdb_engine = pytest.importorskip("tureen.offline.duckdb_engine")

ACCOUNT = Entity("account", join_keys=["account_id"])
BATCH = FileSource("data/pushed", timestamp_field="ts", created_timestamp_column="created",
                   field_mapping={"amount_usd": "amount"})
SOURCE = PushSource("payments", BATCH)
PAYMENTS = FeatureView(
    "payments", [ACCOUNT],
    [Field("amount", Float32), Field("count", Int32), Field("tags", Array(String))], SOURCE,
)
# A second view fed by the same push source: a bad column for it must stop the whole push.
NOTES = FeatureView("notes", [ACCOUNT], [Field("note", String)], SOURCE)
SNAP = RegistrySnapshot(project="unit", entities={"account": ACCOUNT},
                        feature_views={"payments": PAYMENTS, "notes": NOTES})


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Any]:
    e = duckdb_engine.DuckDBEngine(tmp_path)
    yield e
    e.close()


def rows(n: int = 2, **override: list[Any]) -> dict[str, list[Any]]:
    base: dict[str, list[Any]] = {
        "account_id": list(range(1, n + 1)),
        "amount": [1.5 * (i + 1) for i in range(n)],
        "count": [i for i in range(n)],
        "tags": [["a"] for _ in range(n)],
        "note": [f"n{i}" for i in range(n)],
        "ts": [NOW] * n,
        "created": [NOW] * n,
    }
    base.update(override)
    return base


def online(store: SqliteOnlineStore, *refs: str, ids: tuple[int, ...] = (1, 2)
           ) -> dict[str, list[Any]]:
    return OnlineRetrieval(store, lambda: SNAP).get_online_features(
        list(refs), {"account_id": list(ids)}).to_dict()


def offline_files(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "data" / "pushed"
    return sorted(folder.glob("*")) if folder.exists() else []


@pytest.mark.parametrize("shape", ["dict_of_lists", "list_of_dicts", "pandas", "arrow"])
def test_push_online_every_input_shape(store: SqliteOnlineStore, engine: Any, shape: str) -> None:
    data = rows()
    df: Any = {
        "dict_of_lists": data,
        "list_of_dicts": pd.DataFrame(data).to_dict("records"),
        "pandas": pd.DataFrame(data),
        "arrow": pa.table(data),
    }[shape]
    assert push(SNAP, engine, store, "payments", df) == 2
    assert online(store, "payments:amount", "payments:tags", "notes:note") == {
        "account_id": [1, 2], "amount": [1.5, 3.0], "tags": [["a"], ["a"]],
        "note": ["n0", "n1"]}


@pytest.mark.parametrize(("column", "values", "message"), [
    ("amount", ["1.5", "x"], r"column 'amount' has type string, but 'payments' declares "
                             r"amount as Float32"),
    ("count", [1, 2**40], r"column 'count' does not fit Int32"),
    ("account_id", ["1", "2"], r"column 'account_id' has type string.*Int64"),
    ("note", [1, 2], r"column 'note' has type int64, but 'notes' declares note as String"),
    ("tags", [[1], [2]], r"column 'tags' has type list<item: int64>.*Array\(String\)"),
    ("ts", ["yesterday", "x"], r"column 'ts' holds strings that are not ISO-8601"),
    ("account_id", [1, None], r"join key column 'account_id' has null values"),
])
def test_bad_column_rejects_the_whole_push(store: SqliteOnlineStore, engine: Any, tmp_path: Path,
                                           column: str, values: list[Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        push(SNAP, engine, store, "payments", rows(2, **{column: values}),
             to="online_and_offline")
    assert online(store, "payments:amount", "notes:note")["amount"] == [None, None]
    assert offline_files(tmp_path) == []


@pytest.mark.parametrize("missing", ["account_id", "ts", "note", "amount"])
def test_missing_columns_are_named(store: SqliteOnlineStore, engine: Any, tmp_path: Path,
                                   missing: str) -> None:
    data = rows()
    del data[missing]
    with pytest.raises(InvalidRequestError, match=rf"{missing}.*Given columns"):
        push(SNAP, engine, store, "payments", data, to="online_and_offline")
    assert online(store, "payments:count")["count"] == [None, None]
    assert offline_files(tmp_path) == []


def test_push_offline_writes_source_columns_and_is_readable(
    store: SqliteOnlineStore, engine: Any, tmp_path: Path
) -> None:
    data = rows(extra_column=["ignored", "ignored"])
    assert push(SNAP, engine, store, "payments", data, to="offline") == 2
    assert online(store, "payments:amount")["amount"] == [None, None]  # offline only
    schema = engine.source_schema(BATCH)
    assert "extra_column" not in schema.names
    assert {"account_id", "amount", "count", "tags", "note", "ts", "created"} <= set(
        schema.names)
    batches = list(engine.latest_rows(PAYMENTS, None, NOW + timedelta(seconds=1)))
    table = pa.Table.from_batches(batches).sort_by("account_id")
    assert table.column("amount").to_pylist() == [1.5, 3.0]
    assert table.column("event_timestamp").to_pylist() == [NOW, NOW]


def test_push_online_and_offline(store: SqliteOnlineStore, engine: Any, tmp_path: Path) -> None:
    push(SNAP, engine, store, "payments", rows(), to="online_and_offline")
    assert online(store, "payments:count")["count"] == [0, 1]
    assert len(offline_files(tmp_path)) == 1


def test_iso_strings_and_offsets_are_utc(store: SqliteOnlineStore, engine: Any) -> None:
    data = rows(ts=["2026-01-01T10:00:00.000001+02:00", "2026-01-01T08:00:00"])
    push(SNAP, engine, store, "payments", data)
    stamps = OnlineRetrieval(store, lambda: SNAP).get_online_features(
        ["payments:amount"], {"account_id": [1, 2]}).event_timestamps["amount"]
    assert stamps == [datetime(2026, 1, 1, 8, 0, 0, 1, tzinfo=UTC),
                      datetime(2026, 1, 1, 8, tzinfo=UTC)]


def test_older_rows_never_replace_newer(store: SqliteOnlineStore) -> None:
    write_to_online_store(SNAP, store, "notes", rows(note=["new", "new"]))
    older = rows(note=["old", "old"], ts=[NOW - timedelta(hours=1)] * 2)
    assert write_to_online_store(SNAP, store, "notes", older) == 2
    assert online(store, "notes:note")["note"] == ["new", "new"]


def test_write_to_online_store_checks_types_and_names(store: SqliteOnlineStore) -> None:
    with pytest.raises(InvalidRequestError, match=r"column 'note' has type int64"):
        write_to_online_store(SNAP, store, "notes", rows(note=[1, 2]))
    with pytest.raises(NotFoundError, match="Did you mean 'notes'"):
        write_to_online_store(SNAP, store, "note", rows())
    # field_mapping: the source column name is accepted for the feature.
    data = rows()
    data["amount_usd"] = data.pop("amount")
    write_to_online_store(SNAP, store, "payments", data)
    assert online(store, "payments:amount")["amount"] == [1.5, 3.0]


def test_unknown_push_source_and_bad_target(store: SqliteOnlineStore, engine: Any) -> None:
    with pytest.raises(NotFoundError, match="Did you mean 'payments'"):
        push(SNAP, engine, store, "payment", rows())
    with pytest.raises(InvalidRequestError, match="to must be"):
        push(SNAP, engine, store, "payments", rows(), to="both")  # type: ignore[arg-type]


def test_int64_keys_from_pandas_and_naive_times(store: SqliteOnlineStore, engine: Any) -> None:
    df = pd.DataFrame(rows())
    df["ts"] = pd.to_datetime(["2026-02-01 00:00:00.5"] * 2)  # naive: UTC
    df["account_id"] = df["account_id"].astype("int32")
    push(SNAP, engine, store, "payments", df)
    stamps = OnlineRetrieval(store, lambda: SNAP).get_online_features(
        ["payments:amount"], {"account_id": [1]}).event_timestamps["amount"]
    assert stamps == [datetime(2026, 2, 1, 0, 0, 0, 500_000, tzinfo=UTC)]
    assert Int64 in {f.dtype for f in PAYMENTS.key_fields}


def test_all_null_feature_column_is_stored_as_nulls(store: SqliteOnlineStore) -> None:
    write_to_online_store(SNAP, store, "notes", rows(note=[None, None]))
    resp = OnlineRetrieval(store, lambda: SNAP).get_online_features(
        ["notes:note"], {"account_id": [1, 2]})
    assert resp.to_dict()["note"] == [None, None]
    assert [str(s) for s in resp.statuses["note"]] == ["NULL_VALUE", "NULL_VALUE"]


# ---- clock skew and ignored rows (issue 11 #13) ----------------------------------------------

def test_event_time_far_in_the_future_is_rejected_naming_the_row(
    store: SqliteOnlineStore, engine: Any, tmp_path: Path
) -> None:
    future = datetime(2099, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidRequestError) as e:
        push(SNAP, engine, store, "payments", rows(3, ts=[NOW, future, NOW]),
             to="online_and_offline")
    msg = str(e.value)
    assert "row 1" in msg and "2099-01-01" in msg and "clock" in msg
    assert "nothing was stored" in msg
    assert online(store, "payments:amount")["amount"] == [None, None]
    assert offline_files(tmp_path) == []


def test_small_clock_skew_is_accepted_and_the_limit_is_configurable(
    store: SqliteOnlineStore
) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=30)
    assert write_to_online_store(SNAP, store, "notes", rows(1, ts=[soon])) == 1
    later = datetime.now(UTC) + timedelta(hours=2)
    with pytest.raises(InvalidRequestError, match="clock"):
        write_to_online_store(SNAP, store, "notes", rows(1, ts=[later]))
    assert write_to_online_store(SNAP, store, "notes", rows(1, ts=[later]),
                                 max_clock_skew=timedelta(hours=3)) == 1


def test_rows_older_than_the_stored_ones_are_reported(store: SqliteOnlineStore,
                                                      engine: Any) -> None:
    push(SNAP, engine, store, "payments", rows(2, ts=[NOW, NOW]))
    result = push(SNAP, engine, store, "payments",
                  rows(2, ts=[NOW - timedelta(days=1), NOW + timedelta(seconds=1)],
                       amount=[9.0, 8.0]))
    assert result == 2
    assert result.ignored_older == {"payments": 1, "notes": 1}
    assert online(store, "payments:amount")["amount"] == [1.5, 8.0]
    written = write_to_online_store(SNAP, store, "notes", rows(1, ts=[NOW - timedelta(days=2)]))
    assert written == 1 and written.ignored_older == {"notes": 1}
