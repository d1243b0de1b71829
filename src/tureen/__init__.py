"""tureen: define features once, build point-in-time training sets, serve them online and
with your models.

    from tureen import FeatureStore, Entity, FeatureView, Field, FileSource, Float32

Names are imported on first use (PEP 562), so ``import tureen.errors`` or the ``tureen``
command's ``--help`` do not pay for pandas, pyarrow or DuckDB.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_MODULES = {
    "tureen.definitions": ("Aggregation", "AvroFormat", "Entity", "FeatureService",
                           "FeatureView", "Field", "FileSource", "JsonFormat", "KafkaSource",
                           "OnDemandFeatureView", "PushSource", "RequestSource",
                           "StreamFeatureView", "on_demand_feature_view"),
    "tureen.errors": ("BackendUnavailableError", "ConfigError", "ConflictError",
                      "InvalidRequestError", "NotFoundError", "NotReadyError",
                      "RegistryCorruptError", "TureenError"),
    "tureen.store": ("FeatureStore",),
    "tureen.types": ("Array", "Bool", "Bytes", "Float32", "Float64", "Int32", "Int64", "String",
                     "UnixTimestamp"),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'tureen' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
