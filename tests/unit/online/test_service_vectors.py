"""Per-service vectors through the FeatureStore facade: ``online_vector=True`` on a
FeatureService makes ``apply`` build one, every write path keeps it (materialize,
write_to_online_store, push), and a changed or removed definition never leaves one that
disagrees with the views."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tureen.definitions import FeatureService
from tureen.store import FeatureStore

NOW = datetime.now(UTC).replace(microsecond=0)
DEFS = '''
from datetime import timedelta
from tureen import Entity, FeatureService, FeatureView, Field, FileSource, Float64, PushSource

account = Entity(name="account", join_keys=["account_id"])
user = Entity(name="user", join_keys=["user_id"])
a = FeatureView(name="a", entities=[account], schema=[Field("x", Float64)],
                source=FileSource(path="data/a.parquet"), ttl=timedelta(hours=1))
b = FeatureView(name="b", entities=[account], schema=[Field("y", Float64)],
                source=PushSource(name="b_push", batch_source=FileSource(path="data/b.parquet")),
                ttl=timedelta(days=2))
u = FeatureView(name="u", entities=[user], schema=[Field("z", Float64)],
                source=FileSource(path="data/u.parquet"), ttl=timedelta(0))
svc = FeatureService(name="svc", features=[a, b], online_vector=VECTOR)
mixed = FeatureService(name="mixed", features=[a, u], online_vector=True)
'''


def write_defs(repo: Path, vector: bool) -> None:
    (repo / "features.py").write_text(DEFS.replace("VECTOR", str(vector)))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "tureen.yaml").write_text(
        "project: vec\nonline_store: {type: sqlite, path: o.db}\n")
    write_defs(tmp_path, True)
    ts = pa.timestamp("us", tz="UTC")
    for name, col in (("a", "x"), ("b", "y")):
        pq.write_table(pa.table({
            "account_id": [1, 2, 3], col: [1.0, 2.0, 3.0],
            # account 1 is past a's TTL (1 hour), not b's (2 days)
            "event_timestamp": pa.array([NOW - timedelta(hours=3), NOW, NOW], ts),
        }), tmp_path / "data" / f"{name}.parquet")
    pq.write_table(pa.table({"user_id": [1], "z": [9.0], "event_timestamp": pa.array([NOW], ts)}),
                   tmp_path / "data" / "u.parquet")
    return tmp_path


def vectors(repo: Path) -> list[str]:
    with sqlite3.connect(repo / "o.db") as conn:
        return sorted(r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE name LIKE 'vec:__vector:%'"))


def answer(fs: FeatureStore, rows: dict[str, list[Any]]) -> dict[str, Any]:
    r = fs.get_online_features(feature_service="svc", entity_rows=rows)
    return {"values": r.to_dict(), "statuses": r.statuses}


def test_apply_builds_writes_keep_and_reads_use_the_vector(repo: Path) -> None:
    rows = {"account_id": [1, 2, 3, 4]}
    with FeatureStore(repo) as fs:
        fs.apply()
        [table] = vectors(repo)  # "mixed" reads views of two entities: no vector
        assert ":svc:" in table
        fs.materialize(NOW - timedelta(days=1), NOW + timedelta(seconds=1))
        fs.push("b_push", pa.table({"account_id": [2, 4], "y": [20.0, 40.0],
                                    "event_timestamp": [NOW + timedelta(seconds=1)] * 2}))
        fs.write_to_online_store("a", pa.table({  # older than what a holds: ignored
            "account_id": [3], "x": [-3.0], "event_timestamp": [NOW - timedelta(minutes=1)]}))
        got = answer(fs, rows)
        store = fs.online
        seen: list[str] = []
        store._conn().set_trace_callback(seen.append)  # type: ignore[attr-defined]
        assert answer(fs, rows) == got
        assert len(seen) == 1 and ":svc:" in seen[0]  # one statement, on the vector
    assert got["values"]["x"] == [None, 2.0, 3.0, None]
    assert got["values"]["y"] == [1.0, 20.0, 3.0, 40.0]
    assert [s.name for s in got["statuses"]["x"]] == [
        "OUTSIDE_MAX_AGE", "PRESENT", "PRESENT", "NOT_FOUND"]
    # The same answer with no vector at all: the service switched off.
    write_defs(repo, False)
    with FeatureStore(repo) as fs:
        fs.apply()
        assert vectors(repo) == []
        assert answer(fs, rows) == got
        write_defs(repo, True)
        fs.apply()  # switched on again: built from what the views hold
        assert len(vectors(repo)) == 1
        assert answer(fs, rows) == got


def test_a_removed_view_takes_its_vector_with_it(repo: Path) -> None:
    with FeatureStore(repo) as fs:
        fs.apply()
        fs.materialize(NOW - timedelta(days=1), NOW + timedelta(seconds=1))
        (repo / "features.py").write_text(DEFS.replace("VECTOR", "True").replace(
            'svc = FeatureService(name="svc", features=[a, b]', 'svc = FeatureService('
            'name="svc", features=[a]').replace("mixed = ", "# "))
        fs.apply()  # b removed: its rows and the vector holding them are gone
        assert vectors(repo) == []  # svc now reads one view: nothing to gain
        r = fs.get_online_features(feature_service="svc", entity_rows={"account_id": [2]})
        assert r.to_dict()["x"] == [2.0]


def test_feature_service_round_trips_the_switch() -> None:
    svc = FeatureService.from_dict({"name": "s", "features": [{"view": "a", "features": None}]})
    assert not svc.online_vector and "online_vector" not in svc.to_dict()
    on = FeatureService.from_dict({**svc.to_dict(), "online_vector": True})
    assert on.online_vector and FeatureService.from_dict(on.to_dict()) == on
