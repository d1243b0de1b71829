"""get_online_features over a real SQLite store: statuses, order, inputs, on-demand views."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest
from tests.unit.online.conftest import NOW, SERVICE, TXN, snapshot

from tureen.definitions import Field, on_demand_feature_view
from tureen.errors import InvalidRequestError, NotFoundError
from tureen.online.response import FieldStatus
from tureen.online.retrieval import OnlineRetrieval
from tureen.online.sqlite_store import SqliteOnlineStore
from tureen.registry.snapshot import RegistrySnapshot
from tureen.types import Float64

P, N, NF, OLD = (FieldStatus.PRESENT, FieldStatus.NULL_VALUE, FieldStatus.NOT_FOUND,
                 FieldStatus.OUTSIDE_MAX_AGE)


@pytest.fixture
def retrieval(filled: SqliteOnlineStore) -> OnlineRetrieval:
    snap = snapshot()
    return OnlineRetrieval(filled, lambda: snap)


def test_statuses_values_and_timestamps(retrieval: OnlineRetrieval) -> None:
    resp = retrieval.get_online_features(
        ["account_stats:spend", "account_stats:txn_count", "account_stats:tier"],
        [{"account_id": i} for i in (1, 2, 3, 4)],
    )
    assert resp.to_dict() == {
        "account_id": [1, 2, 3, 4],
        "spend": [10.0, None, None, None],
        "txn_count": [3, 7, None, None],
        "tier": ["gold", None, None, None],
    }
    assert resp.statuses == {
        "spend": [P, N, OLD, NF],
        "txn_count": [P, P, OLD, NF],
        "tier": [P, N, OLD, NF],
    }
    stamps = resp.event_timestamps["spend"]
    assert stamps[:3] == [NOW, NOW - timedelta(hours=1), NOW - timedelta(days=2)]
    assert stamps[3] is None


def test_ttl_zero_is_unbounded(retrieval: OnlineRetrieval) -> None:
    resp = retrieval.get_online_features(["merchant_risk:risk"], {"merchant_id": ["m1"]})
    assert resp.statuses["risk"] == [P]
    assert resp.to_dict()["risk"] == [0.5]


def test_ttl_is_checked_against_the_clock(filled: SqliteOnlineStore) -> None:
    snap = snapshot()
    # ttl is 1 day; account 1 was written at NOW, account 2 an hour earlier. The bound is
    # inclusive, as offline: a value exactly ttl old is still served.
    at_bound = OnlineRetrieval(filled, lambda: snap,
                               clock=lambda: (NOW + timedelta(days=1)).timestamp())
    resp = at_bound.get_online_features(["account_stats:txn_count"], {"account_id": [1, 2]})
    assert resp.statuses["txn_count"] == [P, OLD]
    past = OnlineRetrieval(filled, lambda: snap,
                           clock=lambda: (NOW + timedelta(days=1, microseconds=1)).timestamp())
    resp = past.get_online_features(["account_stats:txn_count"], {"account_id": [1, 2]})
    assert resp.statuses["txn_count"] == [OLD, OLD]


def test_requested_order_across_views_and_full_names(retrieval: OnlineRetrieval) -> None:
    features = ["merchant_risk:spend", "account_stats:txn_count", "merchant_risk:risk",
                "account_stats:spend"]
    resp = retrieval.get_online_features(
        features, [{"account_id": 1, "merchant_id": "m1"}], full_feature_names=True)
    assert resp.feature_names == ["merchant_risk__spend", "account_stats__txn_count",
                                  "merchant_risk__risk", "account_stats__spend"]
    assert list(resp.to_dict()) == ["merchant_id", "account_id", *resp.feature_names]
    assert resp.to_dict()["account_stats__spend"] == [10.0]
    with pytest.raises(InvalidRequestError, match="full_feature_names"):
        retrieval.get_online_features(features, [{"account_id": 1, "merchant_id": "m1"}])


@pytest.mark.parametrize("shape", ["list_of_dicts", "dict_of_lists", "dataframe"])
def test_entity_row_shapes_agree(retrieval: OnlineRetrieval, shape: str) -> None:
    ids = [3, 1, 1, 9]
    rows: Any = {
        "list_of_dicts": [{"account_id": i, "ignored": "x"} for i in ids],
        "dict_of_lists": {"account_id": ids},
        "dataframe": pd.DataFrame({"account_id": ids}),
    }[shape]
    resp = retrieval.get_online_features(["account_stats:txn_count"], rows)
    assert resp.to_dict() == {"account_id": ids, "txn_count": [None, 3, 3, None]}
    assert resp.statuses["txn_count"] == [OLD, P, P, NF]


def test_every_dtype_comes_back_typed(retrieval: OnlineRetrieval) -> None:
    resp = retrieval.get_online_features(
        ["account_stats:blob", "account_stats:recent", "account_stats:last_login"],
        {"account_id": [1, 2]})
    assert resp.to_dict() == {"account_id": [1, 2], "blob": [b"\x00", None],
                              "recent": [[1.0, 2.0], None], "last_login": [NOW, None]}
    table = resp.to_arrow()
    assert [str(t) for t in table.schema.types] == [
        "int64", "binary", "list<item: double>", "timestamp[us, tz=UTC]"]


def test_on_demand_views_use_fetched_features_and_request_fields(
    retrieval: OnlineRetrieval,
) -> None:
    resp = retrieval.get_online_features(
        ["amount_ratio:amount_ratio", "risky_amount:risky_amount", "account_stats:txn_count"],
        [{"account_id": 1, "merchant_id": "m1", "amount": 25.0},
         {"account_id": 4, "merchant_id": "m2", "amount": 5.0}],
    )
    values = resp.to_dict()
    assert values["amount_ratio"] == [2.5, None]
    assert values["risky_amount"][0] == 12.5
    assert pd.isna(values["risky_amount"][1])
    assert values["txn_count"] == [3, None]
    assert resp.statuses["amount_ratio"] == [P, N]
    assert resp.event_timestamps["amount_ratio"] == [None, None]


def test_feature_service_by_object_and_name(retrieval: OnlineRetrieval) -> None:
    rows = [{"account_id": 1, "amount": 5.0}]
    by_name = retrieval.get_online_features("fraud", rows)
    by_object = retrieval.get_online_features(SERVICE, rows)
    assert by_name.to_dict() == by_object.to_dict() == {
        "account_id": [1], "txn_count": [3], "spend": [10.0], "amount_ratio": [0.5]}


def test_missing_key_and_request_field_errors_say_what_was_given(
    retrieval: OnlineRetrieval,
) -> None:
    with pytest.raises(InvalidRequestError, match=r"missing 'account_id' \(Int64\).*"
                       r"Did you mean 'acount_id'.*Given: \['acount_id'\]"):
        retrieval.get_online_features(["account_stats:spend"], [{"acount_id": 1}])
    with pytest.raises(InvalidRequestError, match=r"missing 'amount' \(Float64\) in entity row 1"):
        retrieval.get_online_features(["amount_ratio:amount_ratio"],
                                      [{"account_id": 1, "amount": 1.0}, {"account_id": 2}])
    with pytest.raises(InvalidRequestError) as err:  # account_id is needed too: no suggestion
        retrieval.get_online_features(["amount_ratio:amount_ratio"], {"account_id": [1]})
    assert "missing 'amount'" in str(err.value) and "Did you mean" not in str(err.value)
    with pytest.raises(InvalidRequestError, match="Did you mean 'amout'"):
        retrieval.get_online_features(["amount_ratio:amount_ratio"],
                                      {"account_id": [1], "amout": [1.0]})
    with pytest.raises(InvalidRequestError, match="'account_id' expects Int64 values, got str"):
        retrieval.get_online_features(["account_stats:spend"], {"account_id": ["1"]})
    with pytest.raises(InvalidRequestError, match="different lengths"):
        retrieval.get_online_features(["amount_ratio:amount_ratio"],
                                      {"account_id": [1, 2], "amount": [1.0]})
    with pytest.raises(InvalidRequestError, match=r"request field 'amount' expects Float64 "
                       r"values, got str 'ten' in entity row 1"):
        retrieval.get_online_features(["amount_ratio:amount_ratio"],
                                      {"account_id": [1, 2], "amount": [1, "ten"]})
    with pytest.raises(NotFoundError, match="Did you mean"):
        retrieval.get_online_features(["account_stats:spnd"], {"account_id": [1]})


def test_plans_are_cached_per_snapshot(filled: SqliteOnlineStore) -> None:
    snaps: list[RegistrySnapshot] = [snapshot()]
    retrieval = OnlineRetrieval(filled, lambda: snaps[-1])
    first = retrieval.plan(["account_stats:spend"])
    assert retrieval.plan(["account_stats:spend"]) is first
    snaps.append(dataclasses.replace(snaps[0], version=snaps[0].version + 1))
    assert retrieval.plan(["account_stats:spend"]) is not first


async def test_async_matches_sync(retrieval: OnlineRetrieval, filled: SqliteOnlineStore) -> None:
    rows = [{"account_id": i, "amount": 1.0} for i in (1, 2, 5)]
    features = ["account_stats:tier", "amount_ratio:amount_ratio"]
    sync = retrieval.get_online_features(features, rows)
    got = await retrieval.get_online_features_async(features, rows)
    assert got.to_dict() == sync.to_dict()
    assert got.statuses == sync.statuses
    snap = snapshot()
    threaded = OnlineRetrieval(filled, lambda: snap, offload_sync_reads=True)
    assert (await threaded.get_online_features_async(features, rows)).to_dict() == sync.to_dict()


class _AsyncOnly:
    """A store whose sync read must not be used by the async path."""

    def __init__(self, inner: SqliteOnlineStore) -> None:
        self.inner = inner
        self.async_reads = 0

    def write(self, *a: Any) -> int:
        raise AssertionError("unused")

    def read(self, requests: Any) -> Any:
        raise AssertionError("the async path must await read_async")

    async def read_async(self, requests: Any) -> Any:
        self.async_reads += 1
        return self.inner.read(requests)

    def delete_views(self, views: Any) -> None:
        raise AssertionError("unused")

    def close(self) -> None:
        pass


async def test_async_store_is_awaited(filled: SqliteOnlineStore) -> None:
    snap = snapshot()
    store = _AsyncOnly(filled)
    retrieval = OnlineRetrieval(store, lambda: snap)
    resp = await retrieval.get_online_features_async(["account_stats:txn_count"],
                                                     {"account_id": [1]})
    assert resp.to_dict()["txn_count"] == [3]
    assert store.async_reads == 1


def test_on_demand_view_over_request_data_only(filled: SqliteOnlineStore) -> None:
    @on_demand_feature_view(sources=[TXN], schema=[Field("doubled", Float64)], mode="python")
    def doubled(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {"doubled": [a * 2 for a in inputs["amount"]]}

    snap = dataclasses.replace(snapshot(), on_demand_views={"doubled": doubled})
    resp = OnlineRetrieval(filled, lambda: snap).get_online_features(
        ["doubled:doubled"], {"amount": [1.0, 2.5]})
    assert resp.to_dict() == {"doubled": [2.0, 5.0]}
    assert len(resp) == 2
