"""Definitions a feature repo declares; each is a frozen dataclass that (de)serializes itself."""

from tureen.definitions.feature_service import FeatureService
from tureen.definitions.feature_view import FeatureView, FeatureViewProjection, source_of
from tureen.definitions.field import Entity, Field
from tureen.definitions.on_demand import OnDemandFeatureView, on_demand_feature_view
from tureen.definitions.sources import (
    AvroFormat,
    DataSource,
    FileSource,
    JsonFormat,
    KafkaSource,
    PushSource,
    RequestSource,
)
from tureen.definitions.stream import Aggregation, StreamFeatureView

__all__ = [
    "Aggregation",
    "AvroFormat",
    "DataSource",
    "Entity",
    "FeatureService",
    "FeatureView",
    "FeatureViewProjection",
    "Field",
    "FileSource",
    "JsonFormat",
    "KafkaSource",
    "OnDemandFeatureView",
    "PushSource",
    "RequestSource",
    "StreamFeatureView",
    "on_demand_feature_view",
    "source_of",
]
