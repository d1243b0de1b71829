"""tureen dtypes as Spark types, Spark schemas as Arrow schemas, quoted column names."""

from __future__ import annotations

import inspect
from typing import Any

import pyarrow as pa
from pyspark.sql import types as st
from pyspark.sql.pandas.types import to_arrow_schema

from tureen.types import DType

_SCALARS: dict[str, st.DataType] = {
    "Int32": st.IntegerType(), "Int64": st.LongType(), "Float32": st.FloatType(),
    "Float64": st.DoubleType(), "String": st.StringType(), "Bytes": st.BinaryType(),
    "Bool": st.BooleanType(), "UnixTimestamp": st.TimestampType(),
}


def spark_type(dtype: DType) -> st.DataType:
    if dtype.element is not None:
        return st.ArrayType(spark_type(dtype.element))
    return _SCALARS[dtype.name]


def quote(name: str) -> str:
    """A column name quoted for Spark (dots and spaces are legal in tureen names' sources)."""
    return "`" + name.replace("`", "``") + "`"


def arrow_schema(schema: st.StructType) -> pa.Schema:
    # PySpark 4.0 converts timestamps to UTC by itself; 4.1+ asks for the time zone.
    if "timezone" in inspect.signature(to_arrow_schema).parameters:
        kwargs: dict[str, Any] = {"timezone": "UTC"}
        return to_arrow_schema(schema, **kwargs)
    return to_arrow_schema(schema)
