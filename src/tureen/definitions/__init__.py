"""Definitions a feature repo declares; each is a frozen dataclass that (de)serializes itself."""

from tureen.definitions.feature_service import FeatureService
from tureen.definitions.feature_view import FeatureView, FeatureViewProjection, source_of
from tureen.definitions.field import Entity, Field
from tureen.definitions.on_demand import OnDemandFeatureView, on_demand_feature_view
from tureen.definitions.sources import DataSource, FileSource, PushSource, RequestSource

__all__ = [
    "DataSource",
    "Entity",
    "FeatureService",
    "FeatureView",
    "FeatureViewProjection",
    "Field",
    "FileSource",
    "OnDemandFeatureView",
    "PushSource",
    "RequestSource",
    "on_demand_feature_view",
    "source_of",
]
