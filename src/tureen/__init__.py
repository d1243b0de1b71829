"""tureen: define features once, build point-in-time training sets, serve them online and
with your models.

    from tureen import FeatureStore, Entity, FeatureView, Field, FileSource, Float32
"""

from tureen.definitions import (
    Aggregation,
    AvroFormat,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    JsonFormat,
    KafkaSource,
    OnDemandFeatureView,
    PushSource,
    RequestSource,
    StreamFeatureView,
    on_demand_feature_view,
)
from tureen.errors import (
    BackendUnavailableError,
    ConfigError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    NotReadyError,
    RegistryCorruptError,
    TureenError,
)
from tureen.store import FeatureStore
from tureen.types import (
    Array,
    Bool,
    Bytes,
    Float32,
    Float64,
    Int32,
    Int64,
    String,
    UnixTimestamp,
)

__version__ = "0.1.0"

__all__ = [
    "Aggregation",
    "Array",
    "AvroFormat",
    "BackendUnavailableError",
    "Bool",
    "Bytes",
    "ConfigError",
    "ConflictError",
    "Entity",
    "FeatureService",
    "FeatureStore",
    "FeatureView",
    "Field",
    "FileSource",
    "Float32",
    "Float64",
    "Int32",
    "Int64",
    "InvalidRequestError",
    "JsonFormat",
    "KafkaSource",
    "NotFoundError",
    "NotReadyError",
    "OnDemandFeatureView",
    "PushSource",
    "RegistryCorruptError",
    "RequestSource",
    "StreamFeatureView",
    "String",
    "TureenError",
    "UnixTimestamp",
    "on_demand_feature_view",
]
