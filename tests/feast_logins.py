"""One small repo for the Feast compatibility tests (unit and against Feast itself): a String
join key, a UnixTimestamp feature, a stored null (1002) and a row past its TTL (1003)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

NOW = datetime.now(UTC).replace(microsecond=0)
LAST_LOGIN = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)

TUREEN_DEFS = '''
from datetime import timedelta
from tureen import Entity, FeatureView, Field, FileSource, Float64, String, UnixTimestamp

user = Entity(name="user", join_keys=["user_id"], dtype=String)
logins = FeatureView(
    name="logins", entities=[user], ttl=timedelta(days=1),
    schema=[Field("last_login", UnixTimestamp), Field("score", Float64)],
    source=FileSource(path="data/logins.parquet"),
)
'''


def write_data(path: Path) -> None:
    ts = pa.timestamp("us", tz="UTC")
    pq.write_table(pa.table({
        "user_id": ["1001", "1002", "1003"],
        "last_login": pa.array([LAST_LOGIN] * 3, ts),
        "score": [0.5, None, 0.25],  # 1002: a stored null
        "event_timestamp": pa.array([NOW - timedelta(hours=1), NOW - timedelta(hours=1),
                                     NOW - timedelta(days=3)], ts),  # 1003: past the TTL
    }), path)


def tureen_repo(root: Path) -> Path:
    """The repo under ``root``, applied and materialized."""
    from tureen.store import FeatureStore

    (root / "data").mkdir(parents=True)
    write_data(root / "data" / "logins.parquet")
    (root / "tureen.yaml").write_text("project: compat\n")
    (root / "features.py").write_text(TUREEN_DEFS)
    with FeatureStore(root) as fs:
        fs.apply()
        fs.materialize(NOW - timedelta(days=10), NOW + timedelta(seconds=1))
    return root
