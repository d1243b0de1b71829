"""One Open Inference Protocol tensor ⇄ a numpy array.

JSON ``data`` may be flat (row-major) or nested; both decode to an array of ``shape``.
The binary tensor data extension carries fixed-size datatypes as little-endian bytes
(BOOL is one byte per element) and BYTES as a 4-byte little-endian length before each element.
BYTES elements always decode to ``bytes``; ``str`` elements are accepted when encoding.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from tureen.errors import InvalidRequestError
from tureen.types import OIP_NUMPY

NDArray = np.ndarray[Any, Any]

_LE = {k: v.newbyteorder("<") if k != "BYTES" else v for k, v in OIP_NUMPY.items()}
# numpy kinds a JSON array may have for each datatype family
_JSON_KINDS: dict[str, str] = {
    "BOOL": "b",
    "UINT8": "biu", "UINT16": "biu", "UINT32": "biu", "UINT64": "biu",
    "INT8": "biu", "INT16": "biu", "INT32": "biu", "INT64": "biu",
    "FP16": "biuf", "FP32": "biuf", "FP64": "biuf",
}
_LEN = struct.Struct("<I")


def element_count(shape: Sequence[int]) -> int:
    return math.prod(shape)


def check_datatype(name: str, datatype: str) -> np.dtype[Any]:
    dt = OIP_NUMPY.get(datatype)
    if dt is None:
        raise InvalidRequestError(
            f"input {name!r} has unknown datatype {datatype!r}; use one of "
            f"{', '.join(OIP_NUMPY)}."
        )
    return dt


#: at most this many dimensions, and elements counting every non-zero dimension
MAX_DIMS = 32
MAX_ELEMENTS = 1 << 40


def check_shape(name: str, shape: Any) -> list[int]:
    """``shape`` as a list, if it is one a tensor can have: non-negative integers, at most
    ``MAX_DIMS`` of them, whose non-zero product is at most ``MAX_ELEMENTS`` (so no array of
    it is ever too big to describe, even an empty one)."""
    if not isinstance(shape, list | tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidRequestError(
            f"tensor {name!r} has shape {str(shape)[:80]}; a shape is a list of non-negative "
            "integers."
        )
    if len(shape) > MAX_DIMS:
        raise InvalidRequestError(
            f"tensor {name!r} has {len(shape)} dimensions; at most {MAX_DIMS} are supported.")
    count = 1
    for d in shape:
        count *= max(d, 1)
        if count > MAX_ELEMENTS:
            raise InvalidRequestError(
                f"tensor {name!r} has shape {list(shape)}, more than {MAX_ELEMENTS} elements; "
                "send a smaller tensor.")
    return list(shape)


def _size_error(name: str, shape: Sequence[int], got: int) -> InvalidRequestError:
    return InvalidRequestError(
        f"tensor {name!r} has shape {list(shape)} ({element_count(shape)} elements) but its "
        f"data holds {got} elements; make the shape match the data."
    )


def decode_json(name: str, datatype: str, shape: Sequence[int], data: Any) -> NDArray:
    """Decode the JSON ``data`` of a tensor; raises InvalidRequestError on any mismatch."""
    dt = check_datatype(name, datatype)
    check_shape(name, shape)
    if datatype == "BYTES":
        return _decode_json_bytes(name, shape, data)
    if not isinstance(data, list):
        data = [data]
    try:
        raw = np.asarray(data)
    except ValueError:
        raise InvalidRequestError(
            f"tensor {name!r} data is ragged (rows of different lengths); send a rectangular "
            "array or a flat list in row-major order."
        ) from None
    if raw.size and raw.dtype.kind not in _JSON_KINDS[datatype]:
        exact = _exact_integers(data, dt) if dt.kind in "iu" else None
        if exact is not None:
            if exact.size != element_count(shape):
                raise _size_error(name, shape, int(exact.size))
            return exact.reshape(shape)
        raise InvalidRequestError(
            f"tensor {name!r} is declared {datatype} but its data holds "
            f"{_describe_kind(raw.dtype.kind)} values; send {datatype} values or fix the datatype."
        )
    if raw.size != element_count(shape):
        raise _size_error(name, shape, int(raw.size))
    check_range(name, datatype, raw, dt)
    return raw.astype(dt, copy=False).reshape(shape)


def output_array(name: str, datatype: str, shape: Sequence[int] | None,
                 data: Any) -> tuple[NDArray, list[int]]:
    """A model's output given as a (nested) list, a tuple or a scalar, as an array of
    ``datatype`` and ``shape`` (None: the nesting's), checked as a request's JSON data is.
    A mismatch is a bug in the model, not the client's: ``ValueError``, which the server
    logs and answers as a generic internal error."""
    values = list(data) if isinstance(data, tuple) else data
    if not isinstance(values, list):
        values = np.asarray(values).tolist()  # a scalar or another array-like
    try:
        if shape is None:
            try:
                shape = list(np.shape(values))
            except ValueError:
                raise InvalidRequestError(
                    f"tensor {name!r} has no shape and its data is ragged; give the shape or "
                    "rows of one length.") from None
        return decode_json(name, datatype, shape, values), list(shape)
    except InvalidRequestError as exc:
        raise ValueError(f"the model's output {name!r} does not fit its datatype and shape: "
                         f"{exc}") from None


def output_dtype(name: str, datatype: str, array: NDArray) -> NDArray:
    """A model's output array as ``datatype`` holds it on the wire (numpy's float64 declared
    FP32 is sent as 4-byte floats, not 8): cast when every value fits (floats: in range;
    integers and bools: exactly, so 1.0 is an INT64 1 and 1.5 is not); else ``ValueError``,
    a bug in the model (see ``output_array``)."""
    want = OIP_NUMPY.get(datatype)
    if want is None or datatype == "BYTES" or array.dtype == want:
        return array
    problem = f"holds {array.dtype} values"
    if array.dtype.kind in "biuf":
        with np.errstate(all="ignore"):  # NaN or too large: checked below
            out = array.astype(want)
        if want.kind == "f":
            try:
                check_range(name, datatype, array, want)
            except InvalidRequestError as exc:
                problem = str(exc)
            else:
                return out
        else:
            differs = np.flatnonzero(out.reshape(-1) != array.reshape(-1))
            if not differs.size:
                return out
            problem = f"holds {array.reshape(-1)[differs[0]].item()!r}"
    raise ValueError(f"the model's output {name!r} does not fit its datatype and shape: it is "
                     f"declared {datatype} but {problem}; return {datatype} values or declare "
                     "the datatype of the values.")


def check_output_size(name: str, shape: Sequence[int], data: Any) -> None:
    """A model's output must hold as many elements as its declared shape: the encoders
    (JSON, binary, gRPC typed and raw) would send a tensor no client can read. A mismatch
    is a bug in the model: ``ValueError`` (a generic internal error for the client)."""
    size = int(np.size(data))
    want = element_count(shape)
    if size != want:
        dims = [int(d) for d in shape]
        raise ValueError(f"the model's output {name!r} does not fit its declared shape: "
                         f"declared shape {dims} ({want} elements) but its data holds {size}; "
                         "return data of that shape or declare the shape of the data.")


def check_range(name: str, datatype: str, raw: NDArray, dt: np.dtype[Any]) -> None:
    """Values ``dt`` cannot hold are a client's mistake (a cast would wrap them or make them
    infinite, silently)."""
    if not raw.size or np.can_cast(raw.dtype, dt, "safe"):
        return
    if dt.kind == "f":  # an infinity (a model's log(0)) is a value every float type holds
        raw = raw[np.isfinite(raw)]
        if not raw.size:
            return
    lo, hi = raw.min(), raw.max()
    if dt.kind in "iu":
        info = np.iinfo(dt)
        bad = lo if lo < info.min else hi if hi > info.max else None
    else:
        limit = float(np.finfo(dt).max)
        bad = lo if float(lo) < -limit else hi if float(hi) > limit else None
    if bad is not None:
        raise InvalidRequestError(
            f"tensor {name!r} holds {bad.item()!r}, which is out of range for {datatype}; "
            "send values the datatype can hold, or declare a wider datatype.")


def _exact_integers(data: list[Any], dt: np.dtype[Any]) -> NDArray | None:
    """Integers beyond int64 (UINT64) make numpy infer floats; convert them exactly or give up."""
    flat: list[Any] = []
    _flatten(data, flat)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
        return None
    try:
        out = np.array(data, dtype=dt)
    except (ValueError, TypeError, OverflowError):
        return None
    return out if out.reshape(-1).tolist() == flat else None


def _describe_kind(kind: str) -> str:
    return {"b": "boolean", "i": "integer", "u": "integer", "f": "floating-point",
            "U": "string", "S": "string", "O": "mixed"}.get(kind, kind)


def _flatten(data: Any, out: list[Any]) -> None:
    for item in data:
        if isinstance(item, list):
            _flatten(item, out)
        else:
            out.append(item)


def _decode_json_bytes(name: str, shape: Sequence[int], data: Any) -> NDArray:
    flat: list[Any] = []
    _flatten(data if isinstance(data, list) else [data], flat)
    if len(flat) != element_count(shape):
        raise _size_error(name, shape, len(flat))
    out = np.empty(len(flat), dtype=object)
    for i, v in enumerate(flat):
        if isinstance(v, str):
            out[i] = v.encode()
        elif isinstance(v, bytes):
            out[i] = v
        else:
            raise InvalidRequestError(
                f"tensor {name!r} is declared BYTES but element {i} is {type(v).__name__}; "
                "BYTES elements are JSON strings."
            )
    return out.reshape(shape)


def encode_json(array: NDArray) -> list[Any]:
    """Flat row-major JSON-ready list (BYTES elements become str)."""
    if array.dtype.kind in "OUS":
        flat = array.reshape(-1)
        return [_bytes_to_str(v) for v in flat]
    return array.reshape(-1).tolist()


def _bytes_to_str(v: Any) -> str:
    if isinstance(v, bytes | bytearray | np.bytes_):
        try:
            return bytes(v).decode()
        except UnicodeDecodeError:
            raise InvalidRequestError(
                "a BYTES output element is not valid UTF-8 and cannot be sent as JSON; request "
                "the output with binary_data=true."
            ) from None
    return str(v)


def decode_binary(
    name: str, datatype: str, shape: Sequence[int], buf: bytes | memoryview
) -> NDArray:
    """Decode one tensor's bytes from the binary extension (zero-copy for fixed-size types)."""
    dt = check_datatype(name, datatype)
    check_shape(name, shape)
    return decode_checked(name, datatype, dt, shape, buf)


def decode_checked(
    name: str, datatype: str, dt: np.dtype[Any], shape: Sequence[int], buf: bytes | memoryview
) -> NDArray:
    """``decode_binary`` for a caller that already passed ``datatype`` (as ``dt``) through
    ``check_datatype`` and ``shape`` through ``check_shape``: the size checks still run."""
    n = element_count(shape)
    if datatype == "BYTES":
        return _decode_binary_bytes(name, shape, n, memoryview(buf))
    if len(buf) != n * dt.itemsize:
        raise InvalidRequestError(
            f"tensor {name!r} has shape {list(shape)} of {datatype} ({n * dt.itemsize} bytes) "
            f"but {len(buf)} binary bytes were sent; fix binary_data_size or the shape."
        )
    return np.frombuffer(buf, dtype=_LE[datatype]).reshape(shape)


def _decode_binary_bytes(name: str, shape: Sequence[int], n: int, mv: memoryview) -> NDArray:
    if n * 4 > len(mv):  # every element has a 4-byte length: check before allocating
        raise InvalidRequestError(
            f"BYTES tensor {name!r} has shape {list(shape)} ({n} elements) but only "
            f"{len(mv)} bytes, less than the 4-byte length each element needs; fix the shape.")
    out = np.empty(n, dtype=object)
    pos, end = 0, len(mv)
    for i in range(n):
        if pos + 4 > end:
            raise _size_error(name, shape, i)
        (length,) = _LEN.unpack_from(mv, pos)
        pos += 4
        if pos + length > end:
            raise InvalidRequestError(
                f"BYTES tensor {name!r} element {i} claims {length} bytes but only "
                f"{end - pos} remain; each element is a 4-byte little-endian length and its bytes."
            )
        out[i] = bytes(mv[pos:pos + length])
        pos += length
    if pos != end:
        raise InvalidRequestError(
            f"BYTES tensor {name!r} has {end - pos} bytes after its {n} elements; "
            "fix the shape or the data."
        )
    return out.reshape(shape)


def encode_binary(array: NDArray) -> bytes:
    """Raw bytes for the binary extension (and gRPC raw contents)."""
    if array.dtype.kind in "OUS":
        parts: list[bytes] = []
        for v in array.reshape(-1):
            b = v.encode() if isinstance(v, str) else bytes(v)
            parts.append(_LEN.pack(len(b)))
            parts.append(b)
        return b"".join(parts)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array).tobytes()


def raw_view(array: NDArray) -> bytes | memoryview:
    """``encode_binary`` without a copy when the array's memory is already the wire format
    (contiguous, little-endian, fixed-size)."""
    if array.dtype.kind in "OUS" or array.dtype.byteorder == ">" or not array.flags.c_contiguous:
        return encode_binary(array)
    return memoryview(array.data).cast("B")
