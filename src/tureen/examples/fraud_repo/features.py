"""Fraud-detection features: account profile, rolling transaction stats, a request-time ratio."""

from datetime import timedelta

from tureen import (
    Bool,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    Float64,
    Int64,
    PushSource,
    RequestSource,
    on_demand_feature_view,
)

account = Entity(
    name="account",
    join_keys=["account_id"],
    dtype=Int64,
    description="A customer account",
)

account_profile = FeatureView(
    name="account_profile",
    entities=[account],
    schema=[
        Field("credit_score", Int64, description="Latest bureau credit score"),
        Field("account_age_days", Int64),
        Field("has_2fa_installed", Bool),
    ],
    source=FileSource(
        path="data/account_profile.parquet",
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    ),
    ttl=timedelta(days=0),  # profiles never expire
    description="Slowly changing account attributes",
    owner="risk-team@example.com",
)

transaction_stats_push = PushSource(
    name="transaction_stats_push",
    batch_source=FileSource(
        path="data/transaction_stats/",
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    ),
)

transaction_stats = FeatureView(
    name="transaction_stats",
    entities=[account],
    schema=[
        Field("num_transactions_7d", Int64),
        Field("total_amount_7d", Float64),
        Field("has_fraud_7d", Bool),
    ],
    source=transaction_stats_push,
    ttl=timedelta(days=2),
    description="Rolling 7-day transaction aggregates, recomputed daily and pushed on change",
)

transaction = RequestSource(
    name="transaction",
    schema=[Field("amount", Float64, description="Amount of the transaction being scored")],
)


@on_demand_feature_view(
    sources=[transaction_stats[["total_amount_7d", "num_transactions_7d"]], transaction],
    schema=[Field("amount_vs_avg_7d", Float64)],
    mode="python",
)
def transaction_risk(inputs: dict[str, list]) -> dict[str, list]:  # type: ignore[type-arg]
    out = []
    for amount, total, count in zip(
        inputs["amount"], inputs["total_amount_7d"], inputs["num_transactions_7d"], strict=True
    ):
        avg = (total / count) if total is not None and count else None
        out.append(amount / avg if avg else None)
    return {"amount_vs_avg_7d": out}


fraud_detection_v1 = FeatureService(
    name="fraud_detection_v1",
    features=[account_profile, transaction_stats],
    description="Features of the fraud model, version 1",
)

fraud_detection_v2 = FeatureService(
    name="fraud_detection_v2",
    features=[account_profile, transaction_stats, transaction_risk],
    description="v1 plus the request-time amount ratio",
)
