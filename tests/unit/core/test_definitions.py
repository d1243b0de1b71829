from datetime import timedelta
from typing import Any

import pytest

from tureen import (
    Array,
    Bool,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    Float32,
    Int64,
    PushSource,
    RequestSource,
    String,
    on_demand_feature_view,
)
from tureen.definitions import OnDemandFeatureView
from tureen.errors import InvalidRequestError, NotFoundError
from tureen.types import dtype_from_name

account = Entity("account", join_keys=["account_id"], dtype=Int64)
src = FileSource("data/x.parquet", created_timestamp_column="created",
                 field_mapping={"cs": "credit_score"})


def view(**kw: Any) -> FeatureView:
    schema = [Field("credit_score", Float32), Field("tags", Array(String))]
    args: dict[str, Any] = dict(name="profile", entities=[account], schema=schema,
                                source=src, ttl=timedelta(days=2))
    args.update(kw)
    return FeatureView(**args)


def test_entity_defaults_join_key_to_name() -> None:
    assert Entity("driver").join_keys == ("driver",)


def test_join_key_fields_in_schema_are_not_features() -> None:
    v = view(schema=[Field("account_id", Int64), Field("credit_score", Float32)])
    assert v.feature_names == ("credit_score",)
    assert v.join_keys == ("account_id",)


@pytest.mark.parametrize("ttl", [timedelta(seconds=-1), 5])
def test_bad_ttl_is_rejected(ttl: Any) -> None:
    with pytest.raises(InvalidRequestError, match="ttl"):
        view(ttl=ttl)


def test_none_ttl_means_unbounded() -> None:
    assert view(ttl=None).ttl_seconds == 0


def test_duplicate_field_rejected() -> None:
    with pytest.raises(InvalidRequestError, match="twice"):
        view(schema=[Field("a", Int64), Field("a", Int64)])


def test_request_source_cannot_back_a_view() -> None:
    with pytest.raises(InvalidRequestError, match="on-demand"):
        view(source=RequestSource("r", [Field("a", Int64)]))


def test_projection_checks_feature_names() -> None:
    with pytest.raises(NotFoundError, match="credit_score"):
        view()[["credit_scor"]]
    assert view()[["credit_score"]].features == ("credit_score",)


def test_field_requires_a_tureen_dtype() -> None:
    with pytest.raises(InvalidRequestError, match="dtype"):
        Field("x", float)  # type: ignore[arg-type]


def test_dtype_names_round_trip() -> None:
    for t in (Int64, Float32, Bool, String, Array(Float32), Array(Int64)):
        assert dtype_from_name(t.name) is t
    with pytest.raises(InvalidRequestError, match="Float32"):
        dtype_from_name("Flaot32")
    with pytest.raises(InvalidRequestError):
        Array(Array(Int64))


@pytest.mark.parametrize("entity", [
    account,
    Entity("user", join_keys=["user_id"], dtype=String, description="d", tags={"t": "1"},
           owner="me"),
    Entity("driver"),
    Entity("pair", join_keys=["a", "b"], dtype=String),
    Entity("mixed", join_keys=["a", "b"], dtype={"a": String, "b": Int64}),
    Entity("same", join_keys=["a", "b"], dtype={"a": Int64, "b": Int64}),
])
def test_entity_round_trips_through_dict(entity: Entity) -> None:
    back = Entity.from_dict(entity.to_dict())
    assert back == entity
    assert back.to_dict() == entity.to_dict()
    assert back.key_fields == entity.key_fields


def test_entity_dicts_stored_before_the_dtype_key_still_load() -> None:
    legacy = {"name": "account", "join_keys": ["account_id"], "dtypes": {"account_id": "Int64"},
              "description": "", "tags": {}, "owner": ""}
    assert Entity.from_dict(legacy) == account


def test_view_round_trips_through_dict() -> None:
    v = view(source=PushSource("push", src), tags={"team": "risk"}, owner="me")
    back = FeatureView.from_dict(v.to_dict(), {"account": account})
    assert back == v


@on_demand_feature_view(
    sources=[view()[["credit_score"]], RequestSource("req", [Field("amount", Float32)])],
    schema=[Field("ratio", Float32)],
    mode="python",
)
def ratio(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    return {"ratio": [a / c if c else None for a, c in zip(inputs["amount"],
                                                           inputs["credit_score"], strict=True)]}


def test_on_demand_view_survives_the_registry() -> None:
    back = OnDemandFeatureView.from_dict(ratio.to_dict())
    cols = {"amount": [10.0, 3.0], "credit_score": [5.0, 0.0]}
    assert back.transform(cols) == ratio.transform(cols) == {"ratio": [2.0, None]}
    assert "@on_demand" not in back.udf_source


def test_on_demand_view_wrong_output_is_explained() -> None:
    @on_demand_feature_view(sources=[view()], schema=[Field("x", Float32)])
    def bad(df: Any) -> Any:
        return df[["credit_score"]]

    with pytest.raises(InvalidRequestError, match="did not return column 'x'"):
        bad.transform({"credit_score": [1.0]})


def test_feature_service_needs_features() -> None:
    with pytest.raises(InvalidRequestError):
        FeatureService("empty", [])
