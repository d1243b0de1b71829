"""OnlineResponse conversions, including Feast's JSON response shape."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tests.unit.online.conftest import NOW, snapshot

from tureen.online.response import OnlineResponse
from tureen.online.retrieval import OnlineRetrieval
from tureen.online.sqlite_store import SqliteOnlineStore


@pytest.fixture
def response(filled: SqliteOnlineStore) -> OnlineResponse:
    snap = snapshot()
    return OnlineRetrieval(filled, lambda: snap).get_online_features(
        ["account_stats:txn_count", "account_stats:spend", "account_stats:blob",
         "account_stats:last_login"],
        {"account_id": [1, 2, 9]},
    )


def test_feast_json_shape(response: OnlineResponse) -> None:
    body = response.to_feast_json()
    stamp = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    earlier = (NOW.replace(hour=(NOW.hour - 1) % 24) if NOW.hour else None)
    assert body["metadata"] == {"feature_names": ["account_id", "txn_count", "spend", "blob",
                                                  "last_login"]}
    keys, txn, spend, blob, login = body["results"]
    assert keys == {"values": [1, 2, 9], "statuses": ["PRESENT"] * 3,
                    "event_timestamps": ["1970-01-01T00:00:00Z"] * 3}
    assert txn["values"] == [3, 7, None]
    assert txn["statuses"] == ["PRESENT", "PRESENT", "NOT_FOUND"]
    assert txn["event_timestamps"][0] == stamp
    assert txn["event_timestamps"][2] == "1970-01-01T00:00:00Z"
    if earlier is not None:
        assert txn["event_timestamps"][1] == earlier.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert spend["statuses"] == ["PRESENT", "NULL_VALUE", "NOT_FOUND"]
    assert blob["values"] == ["AA==", None, None]  # bytes are base64, as in protobuf JSON
    # timestamps are epoch seconds, as Feast's unix_timestamp_val
    assert login["values"] == [int(NOW.timestamp() // 1), None, None]


def test_to_numpy_is_typed(response: OnlineResponse) -> None:
    arrays = response.to_numpy()
    assert arrays["account_id"].dtype == np.int64
    assert arrays["spend"].dtype == np.float32
    assert arrays["spend"][0] == 10.0
    assert math.isnan(arrays["spend"][1])
    # An int column with missing values cannot be int64: it stays object with None.
    assert arrays["txn_count"].dtype == object
    assert list(arrays["txn_count"]) == [3, 7, None]
    assert arrays["last_login"].dtype == np.dtype("datetime64[us]")
    assert np.isnat(arrays["last_login"][2])


def test_to_df_and_arrow(response: OnlineResponse) -> None:
    table = response.to_arrow()
    assert table.column_names == ["account_id", "txn_count", "spend", "blob", "last_login"]
    assert table.column("txn_count").to_pylist() == [3, 7, None]
    df = response.to_df()
    assert list(df.columns) == table.column_names
    assert len(df) == 3
    assert len(response) == 3
