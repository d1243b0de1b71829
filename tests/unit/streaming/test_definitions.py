"""KafkaSource, Aggregation and StreamFeatureView: Feast's names, validation, registry."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tureen import (
    Aggregation,
    AvroFormat,
    Entity,
    FeatureStore,
    FeatureView,
    Field,
    FileSource,
    Float64,
    Int64,
    JsonFormat,
    KafkaSource,
    PushSource,
    StreamFeatureView,
    String,
)
from tureen.errors import ConfigError, InvalidRequestError
from tureen.registry.snapshot import RegistrySnapshot

account = Entity("account", join_keys=["account_id"], dtype=Int64)
log = FileSource("data/transactions/")
kafka = KafkaSource(name="transactions", topic="transactions", batch_source=log,
                    kafka_bootstrap_servers="127.0.0.1:9092", timestamp_field="ts",
                    watermark_delay_threshold=timedelta(seconds=5))
schema = [Field("amount", Float64), Field("merchant", String)]


def stream_view(**kw: Any) -> StreamFeatureView:
    args: dict[str, Any] = dict(name="tx_stats", entities=[account], schema=schema,
                                source=kafka)
    args.update(kw)
    return StreamFeatureView(**args)


def test_feast_argument_names_are_accepted() -> None:
    assert kafka.bootstrap_servers == "127.0.0.1:9092"
    assert kafka.watermark_delay == timedelta(seconds=5)
    assert KafkaSource(name="a", topic="t", batch_source=log,
                       message_format=JsonFormat()).message_format == "json"


def test_aggregation_names_types_and_default_slide() -> None:
    v = stream_view(aggregations=[
        Aggregation("amount", "sum", timedelta(hours=1), timedelta(minutes=5)),
        Aggregation("amount", "mean", timedelta(days=7), timedelta(minutes=5)),
        Aggregation("merchant", "count_distinct_approx", timedelta(hours=1),
                    timedelta(minutes=5), name="merchants_1h"),
    ])
    assert [(f.name, f.dtype) for f in v.features] == [
        ("sum_amount_1h", Float64), ("mean_amount_7d", Float64), ("merchants_1h", Int64)]
    assert Aggregation("amount", "max", timedelta(hours=2)).slide_interval == timedelta(hours=2)
    assert v.offline_source.path == "data/transactions/_windows/tx_stats"
    assert v.input_view.feature_names == ("amount", "merchant")


def test_latest_value_view_serves_the_event_fields() -> None:
    v = stream_view()
    assert v.feature_names == ("amount", "merchant")
    assert v.offline_source == log


@pytest.mark.parametrize(("aggs", "match"), [
    ([Aggregation("fee", "sum", timedelta(hours=1))], "does not declare"),
    ([Aggregation("merchant", "sum", timedelta(hours=1))], "numeric"),
    ([Aggregation("amount", "sum", timedelta(hours=1), timedelta(minutes=1)),
      Aggregation("amount", "max", timedelta(hours=1), timedelta(minutes=5))], "same slide"),
    ([Aggregation("amount", "sum", timedelta(hours=1)),
      Aggregation("amount", "sum", timedelta(hours=1))], "named"),
])
def test_bad_aggregations_are_rejected_with_the_reason(aggs: list[Aggregation],
                                                       match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        stream_view(aggregations=aggs)


def test_aggregation_arguments_are_checked() -> None:
    with pytest.raises(InvalidRequestError, match="function"):
        Aggregation("amount", "median", timedelta(hours=1))  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="longer"):
        Aggregation("amount", "sum", timedelta(minutes=1), timedelta(minutes=5))
    with pytest.raises(InvalidRequestError, match="positive"):
        Aggregation("amount", "sum", timedelta(0))


def test_windows_need_the_offline_log() -> None:
    with pytest.raises(InvalidRequestError, match="offline=True"):
        stream_view(offline=False, aggregations=[Aggregation("amount", "sum",
                                                             timedelta(hours=1))])


def test_late_event_policy_is_checked() -> None:
    agg = [Aggregation("amount", "sum", timedelta(hours=1))]
    v = stream_view(aggregations=agg, late_events="update",
                    allowed_lateness=timedelta(minutes=30))
    assert v.allowed_lateness_us == 30 * 60 * 1_000_000
    assert stream_view(aggregations=agg).allowed_lateness_us == 0  # "drop", the default
    with pytest.raises(InvalidRequestError, match="needs allowed_lateness > 0"):
        stream_view(aggregations=agg, late_events="update")
    with pytest.raises(InvalidRequestError, match="with late_events='update' only"):
        stream_view(aggregations=agg, allowed_lateness=timedelta(minutes=1))
    with pytest.raises(InvalidRequestError, match="latest-value view always takes"):
        stream_view(late_events="update", allowed_lateness=timedelta(minutes=1))
    with pytest.raises(InvalidRequestError, match="'drop' or 'update'"):
        stream_view(aggregations=agg, late_events="keep")
    with pytest.raises(InvalidRequestError, match=">= 0"):
        stream_view(aggregations=agg, late_events="update",
                    allowed_lateness=timedelta(minutes=-1))


def test_sources_are_checked() -> None:
    with pytest.raises(InvalidRequestError, match="StreamFeatureView"):
        FeatureView(name="v", entities=[account], schema=schema, source=kafka)
    with pytest.raises(InvalidRequestError, match="KafkaSource or a PushSource"):
        stream_view(source=log)
    with pytest.raises(InvalidRequestError, match="topic"):
        KafkaSource(name="a", topic="bad topic", batch_source=log)
    with pytest.raises(InvalidRequestError, match="Parquet"):
        KafkaSource(name="a", topic="t", batch_source=FileSource("data/x.csv"))
    with pytest.raises(InvalidRequestError, match="AvroFormat"):
        KafkaSource(name="a", topic="t", batch_source=log, message_format="avro")


def test_registry_round_trip_keeps_every_field() -> None:
    v = stream_view(aggregations=[Aggregation("amount", "sum", timedelta(hours=1),
                                              timedelta(minutes=5))], ttl=timedelta(days=1))
    late = stream_view(name="late", aggregations=v.aggregations, late_events="update",
                       allowed_lateness=timedelta(minutes=7))
    push = stream_view(name="clicks", source=PushSource("clicks", FileSource("data/clicks/")))
    avro = stream_view(name="avro", source=KafkaSource(
        name="a", topic="t", batch_source=FileSource("data/a/"),
        message_format=AvroFormat('{"type": "record", "name": "r", "fields": []}')))
    snap = RegistrySnapshot("p", entities={"account": account},
                            feature_views={x.name: x for x in (v, late, push, avro)})
    back = RegistrySnapshot.from_dict(snap.to_dict())
    assert {k: x.to_dict() for k, x in back.feature_views.items()} == {
        k: x.to_dict() for k, x in snap.feature_views.items()}
    assert isinstance(back.feature_views["tx_stats"], StreamFeatureView)
    assert back.feature_views["late"] == late
    assert "late_events" not in v.to_dict()  # a "drop" view's record is unchanged


HEADER = """
from datetime import timedelta
from tureen import (Aggregation, Entity, Field, FileSource, Float64, Int64, KafkaSource,
                    StreamFeatureView)

account = Entity(name="account", join_keys=["account_id"], dtype=Int64)
tx = KafkaSource(name="tx", topic="tx", batch_source=FileSource(path="data/tx/"),
                 timestamp_field="ts")
"""


def _repo(tmp_path: Path, body: str) -> Path:
    (tmp_path / "tureen.yaml").write_text("project: p\n")
    (tmp_path / "features.py").write_text(textwrap.dedent(HEADER + body))
    return tmp_path


def test_plan_and_apply_validate_stream_views(tmp_path: Path) -> None:
    repo = _repo(tmp_path, """
stats = StreamFeatureView(name="stats", entities=[account], source=tx,
    schema=[Field("amount", Float64)],
    aggregations=[Aggregation("amount", "sum", timedelta(hours=1))])
""")
    store = FeatureStore(repo)
    plan = store.apply()
    assert [(c.action, c.name) for c in plan.changes if c.kind == "feature view"] == [
        ("create", "stats")]
    assert isinstance(store.get_feature_view("stats"), StreamFeatureView)
    store.close()


def test_apply_checks_an_existing_event_log(tmp_path: Path) -> None:
    import pandas as pd

    repo = _repo(tmp_path, """
stats = StreamFeatureView(name="stats", entities=[account], source=tx,
    schema=[Field("amount", Float64)])
""")
    (repo / "data" / "tx").mkdir(parents=True)
    pd.DataFrame({"account_id": [1], "amount": ["oops"],
                  "event_timestamp": pd.to_datetime(["2026-01-01"], utc=True)}
                 ).to_parquet(repo / "data" / "tx" / "part-0.parquet")
    with pytest.raises(ConfigError, match="amount"):
        FeatureStore(repo).apply()
