"""The one table of feature data types.

A Field's dtype decides the Arrow type offline, the numpy dtype in memory, the Open Inference
Protocol datatype of the tensor sent to a model, and (through Arrow) the encoding online.
Nothing downstream re-declares types: look them up here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from tureen.errors import InvalidRequestError, suggest


@dataclass(frozen=True)
class DType:
    """A feature value type. Scalars are module constants; ``Array(x)`` builds list types."""

    name: str
    arrow: pa.DataType
    numpy: np.dtype[Any]
    oip: str
    python: type
    element: DType | None = None

    @property
    def is_array(self) -> bool:
        return self.element is not None

    def __repr__(self) -> str:
        return self.name

    def __str__(self) -> str:
        return self.name


_UTC_US = pa.timestamp("us", tz="UTC")

Int32 = DType("Int32", pa.int32(), np.dtype(np.int32), "INT32", int)
Int64 = DType("Int64", pa.int64(), np.dtype(np.int64), "INT64", int)
Float32 = DType("Float32", pa.float32(), np.dtype(np.float32), "FP32", float)
Float64 = DType("Float64", pa.float64(), np.dtype(np.float64), "FP64", float)
String = DType("String", pa.string(), np.dtype(object), "BYTES", str)
Bytes = DType("Bytes", pa.binary(), np.dtype(object), "BYTES", bytes)
Bool = DType("Bool", pa.bool_(), np.dtype(np.bool_), "BOOL", bool)
# Timestamps are UTC with microsecond precision; on the wire (OIP) they are INT64 epoch micros.
UnixTimestamp = DType(
    "UnixTimestamp", _UTC_US, np.dtype("datetime64[us]"), "INT64", object
)

SCALARS: dict[str, DType] = {
    t.name: t for t in (Int32, Int64, Float32, Float64, String, Bytes, Bool, UnixTimestamp)
}

_ARRAY_CACHE: dict[str, DType] = {}


def Array(element: DType) -> DType:  # noqa: N802 - reads like a type constructor, as in Feast
    """The list type whose items are ``element`` (a scalar type)."""
    if element.is_array:
        raise InvalidRequestError(
            f"Array({element.name}) is not supported: arrays of arrays cannot be served as "
            "tensors. Flatten the value or store it as Bytes."
        )
    name = f"Array({element.name})"
    cached = _ARRAY_CACHE.get(name)
    if cached is None:
        cached = DType(name, pa.list_(element.arrow), np.dtype(object), element.oip, list, element)
        _ARRAY_CACHE[name] = cached
    return cached


_ARRAY_RE = re.compile(r"^\s*Array\(\s*(\w+)\s*\)\s*$")


def dtype_from_name(name: str) -> DType:
    """Parse ``"Float32"`` or ``"Array(Int64)"`` (as stored in the registry) into a DType."""
    if name in SCALARS:
        return SCALARS[name]
    m = _ARRAY_RE.match(name)
    if m and m.group(1) in SCALARS:
        return Array(SCALARS[m.group(1)])
    known = list(SCALARS) + [f"Array({s})" for s in SCALARS]
    raise InvalidRequestError(
        f"unknown dtype {name!r}.{suggest(name, known)} Known types: {', '.join(SCALARS)} "
        "and Array(<type>)."
    )


def dtype_from_arrow(t: pa.DataType) -> DType | None:
    """The DType whose Arrow type best matches ``t`` (used to check sources), or None."""
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return UnixTimestamp
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        inner = dtype_from_arrow(t.value_type)
        return Array(inner) if inner is not None and not inner.is_array else None
    if pa.types.is_dictionary(t):
        return dtype_from_arrow(t.value_type)
    if pa.types.is_boolean(t):
        return Bool
    if pa.types.is_integer(t):
        return Int64 if t.bit_width > 32 or pa.types.is_unsigned_integer(t) else Int32
    if pa.types.is_floating(t):
        return Float64 if t.bit_width > 32 else Float32
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return String
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return Bytes
    return None


def _family(t: DType) -> str:
    if t is Bool:
        return "bool"
    if t in (Int32, Int64):
        return "int"
    if t in (Float32, Float64):
        return "float"
    if t in (String, Bytes):
        return t.name.lower()
    if t is UnixTimestamp:
        return "ts"
    return "array:" + _family(t.element) if t.element is not None else t.name


def source_type_compatible(declared: DType, found: pa.DataType) -> bool:
    """True when a source column of Arrow type ``found`` can feed a Field of ``declared`` type.

    Widening and narrowing inside one family (int32/int64, float32/float64) is allowed because
    values are cast on the way in; crossing families (string into Float32) is not, except ints
    into floats.
    """
    got = dtype_from_arrow(found)
    if got is None:
        return False
    fd, fg = _family(declared), _family(got)
    if fd == fg:
        return True
    return (fd, fg) in {("float", "int"), ("array:float", "array:int")} or pa.types.is_null(found)


# Open Inference Protocol datatypes: byte size per element and numpy dtype.
OIP_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}

NUMPY_OIP: dict[str, str] = {
    str(v): k for k, v in OIP_NUMPY.items() if k != "BYTES"
}


#: the same map keyed by dtype: a dtype equal to one of these has its str (and the object
#: dtype is BYTES); any other goes the str way
_OIP_OF_DTYPE: dict[np.dtype[Any], str] = {v: k for k, v in OIP_NUMPY.items()}


def oip_datatype_of(array: np.ndarray[Any, Any]) -> str:
    """OIP datatype name for a numpy array (object/str/bytes arrays are BYTES)."""
    dt = array.dtype
    name = _OIP_OF_DTYPE.get(dt)  # a dict lookup; str(dtype) runs numpy's Python code
    if name is not None:
        return name
    if dt.kind in ("O", "U", "S"):
        return "BYTES"
    try:
        return NUMPY_OIP[str(dt)]
    except KeyError:
        raise InvalidRequestError(
            f"numpy dtype {array.dtype} has no Open Inference Protocol datatype; cast it to one "
            f"of {', '.join(NUMPY_OIP)}."
        ) from None
