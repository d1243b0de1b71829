"""Tensor codecs: JSON and binary round trips for every OIP datatype, and the error cases."""

from __future__ import annotations

from typing import Any, Literal

import hypothesis.extra.numpy as hnp
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tureen.codecs.tensor import (
    check_output_size,
    decode_binary,
    decode_checked,
    decode_json,
    encode_binary,
    encode_json,
    output_array,
    output_dtype,
)
from tureen.errors import InvalidRequestError
from tureen.types import NUMPY_OIP, OIP_NUMPY, oip_datatype_of

NUMERIC = [k for k in OIP_NUMPY if k != "BYTES"]
shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)


def numeric_arrays(datatype: str, finite: bool) -> st.SearchStrategy[np.ndarray[Any, Any]]:
    dt = OIP_NUMPY[datatype]
    elements = None
    if dt.kind == "f":
        width: Literal[16, 32, 64] = 16 if dt.itemsize == 2 else 32 if dt.itemsize == 4 else 64
        elements = st.floats(width=width, allow_nan=not finite,
                             allow_infinity=not finite)
    return hnp.arrays(dt, shapes, elements=elements)


def bytes_arrays(text: bool) -> st.SearchStrategy[np.ndarray[Any, Any]]:
    item = st.text(max_size=8).map(str.encode) if text else st.binary(max_size=8)

    def build(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray[Any, Any]]:
        n = int(np.prod(shape))
        return st.lists(item, min_size=n, max_size=n).map(
            lambda xs: np.array([*xs, b""], dtype=object)[:-1].reshape(shape))

    return shapes.flatmap(build)


def same(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    if a.shape != b.shape:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True)) and a.dtype == b.dtype
    return bool(np.array_equal(a, b)) and (a.dtype == b.dtype or a.dtype.kind == "O")


@pytest.mark.parametrize("datatype", NUMERIC)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_json_round_trip(datatype: str, data: st.DataObject) -> None:
    arr = data.draw(numeric_arrays(datatype, finite=True))
    wire = orjson.loads(orjson.dumps(encode_json(arr)))
    assert same(decode_json("x", datatype, list(arr.shape), wire), arr)


@pytest.mark.parametrize("datatype", NUMERIC)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_binary_round_trip(datatype: str, data: st.DataObject) -> None:
    arr = data.draw(numeric_arrays(datatype, finite=False))
    out = decode_binary("x", datatype, list(arr.shape), encode_binary(arr))
    assert same(out, arr)


@settings(max_examples=60, deadline=None)
@given(arr=bytes_arrays(text=True))
def test_bytes_json_round_trip(arr: np.ndarray[Any, Any]) -> None:
    wire = orjson.loads(orjson.dumps(encode_json(arr)))
    assert same(decode_json("x", "BYTES", list(arr.shape), wire), arr)


@settings(max_examples=60, deadline=None)
@given(arr=bytes_arrays(text=False))
def test_bytes_binary_round_trip(arr: np.ndarray[Any, Any]) -> None:
    assert same(decode_binary("x", "BYTES", list(arr.shape), encode_binary(arr)), arr)


@pytest.mark.parametrize("datatype", NUMERIC)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_a_model_output_list_is_its_array(datatype: str, data: st.DataObject) -> None:
    """A model's ``InferOutput.data`` as a nested list: the array it lists, with the shape
    inferred from the nesting (no zero-length dimension: [] has no row length)."""
    dt = OIP_NUMPY[datatype]
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    arr = data.draw(hnp.arrays(dt, shape, elements=st.floats(width=16) if dt.kind == "f"
                               else None))
    got, got_shape = output_array("y", datatype, None, arr.tolist())
    assert got_shape == list(arr.shape) and same(got, arr)
    got, _ = output_array("y", datatype, list(arr.shape), arr.reshape(-1).tolist())
    assert same(got, arr)


@pytest.mark.parametrize(("datatype", "shape", "data", "says"), [
    ("INT64", [2], ["a", 2], "holds string values"),
    ("FP32", [2], [1.0, 2.0, 3.0], "holds 3 elements"),
    ("INT32", None, [[1, 2], [3]], "ragged"),
    ("BYTES", [1], [7], "element 0 is int"),
])
def test_a_model_output_list_that_does_not_fit_is_a_model_bug(
        datatype: str, shape: list[int] | None, data: Any, says: str) -> None:
    with pytest.raises(ValueError, match=says) as e:
        output_array("y", datatype, shape, data)
    assert not isinstance(e.value, InvalidRequestError)  # never a client's 400
    assert "model's output 'y'" in str(e.value)


@pytest.mark.parametrize(("datatype", "values", "dtype"), [
    ("FP32", [0.5, 1.5], np.float64),  # numpy's default float, declared FP32
    ("FP64", [1, 2], np.int64),
    ("INT64", [1.0, 2.0], np.float64),  # integral floats (a classifier's labels)
    ("BOOL", [1, 0], np.int64),
    ("FP32", [float("inf"), float("nan")], np.float64),
    ("FP32", [1.0, 2.0], ">f4"),
])
def test_a_model_output_array_is_cast_to_its_datatype(datatype: str, values: list[Any],
                                                      dtype: Any) -> None:
    got = output_dtype("y", datatype, np.array(values, dtype=dtype))
    assert got.dtype == OIP_NUMPY[datatype]
    assert np.array_equal(got, np.array(values), equal_nan=True)


@pytest.mark.parametrize(("datatype", "values", "says"), [
    ("INT64", [1.0, 1.5], "holds 1.5"),
    ("INT8", [300], "holds 300"),
    ("INT64", [float("nan")], "holds nan"),
    ("BOOL", [2], "holds 2"),
    ("FP32", [1e300], "out of range"),
    ("FP32", ["a"], "holds <U1 values"),
])
def test_a_model_output_array_that_does_not_fit_is_a_model_bug(datatype: str,
                                                               values: list[Any],
                                                               says: str) -> None:
    with pytest.raises(ValueError, match=says) as e:
        output_dtype("y", datatype, np.array(values))
    assert not isinstance(e.value, InvalidRequestError)


def test_an_output_array_of_its_datatype_is_kept_as_it_is() -> None:
    from tureen.serving.inference import InferOutput

    arr = np.arange(4, dtype=np.float32)
    assert InferOutput("y", "FP32", [4], arr).data is arr
    text = np.array(["a", "b"])
    assert InferOutput("s", "BYTES", [2], text).data is text  # encoded as it is sent


def test_a_model_output_tuple_or_scalar() -> None:
    assert output_array("y", "BYTES", None, ("a", b"b"))[0].tolist() == [b"a", b"b"]
    arr, shape = output_array("y", "FP64", [], 2.5)
    assert shape == [] and arr.shape == () and arr.dtype == np.float64


def test_nested_and_flat_json_agree() -> None:
    flat = decode_json("x", "INT32", [2, 2], [1, 2, 3, 4])
    nested = decode_json("x", "INT32", [2, 2], [[1, 2], [3, 4]])
    assert np.array_equal(flat, nested) and flat.dtype == np.int32


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "needle"),
    [
        ("FP32", [2, 2], [1.0, 2.0, 3.0], "3 elements"),
        ("FP32", [1, 2], ["a", "b"], "declared FP32"),
        ("INT64", [2], [1.5, 2.0], "declared INT64"),
        ("BOOL", [1], [1], "declared BOOL"),
        ("FP99", [1], [1], "unknown datatype"),
        ("FP32", [2, 2], [[1.0, 2.0], [3.0]], "ragged"),
        ("BYTES", [1], [1], "JSON strings"),
        # values the datatype cannot hold were wrapped or turned into inf, silently
        ("INT8", [2], [1, 300], "out of range for INT8"),
        ("UINT8", [1], [-1], "out of range for UINT8"),
        ("INT32", [1], [2**31], "out of range for INT32"),
        ("INT64", [1], [2**63], "out of range for INT64"),
        ("UINT32", [2, 1], [[1], [2**32]], "out of range for UINT32"),
        ("FP16", [1], [1e10], "out of range for FP16"),
        ("FP32", [1], [-1e39], "out of range for FP32"),
    ],
)
def test_json_errors_say_what_is_wrong(datatype: str, shape: list[int], data: Any,
                                       needle: str) -> None:
    with pytest.raises(InvalidRequestError, match=needle):
        decode_json("x", datatype, shape, data)


def test_binary_size_mismatch() -> None:
    with pytest.raises(InvalidRequestError, match="binary bytes"):
        decode_binary("x", "FP32", [3], b"\0" * 8)


def test_decode_checked_keeps_the_size_checks() -> None:
    """The gRPC decoder checks shape and datatype once, then decodes with decode_checked:
    a payload of the wrong size is still refused."""
    fp32 = OIP_NUMPY["FP32"]
    with pytest.raises(InvalidRequestError, match="binary bytes"):
        decode_checked("x", "FP32", fp32, [3], b"\0" * 8)
    with pytest.raises(InvalidRequestError, match="claims 10 bytes"):
        decode_checked("x", "BYTES", OIP_NUMPY["BYTES"], [1], b"\x0a\0\0\0abc")
    assert decode_checked("x", "FP32", fp32, [2], b"\0" * 8).tolist() == [0.0, 0.0]


def test_bytes_binary_truncated() -> None:
    with pytest.raises(InvalidRequestError, match="claims 10 bytes"):
        decode_binary("x", "BYTES", [1], b"\x0a\0\0\0abc")
    with pytest.raises(InvalidRequestError, match="after its 1 elements"):
        decode_binary("x", "BYTES", [1], b"\x01\0\0\0ab")


def test_fp16_binary_is_little_endian() -> None:
    arr = np.array([1.5, -2.0], dtype=np.float16)
    assert encode_binary(arr) == arr.astype("<f2").tobytes()
    big = arr.astype(">f2")
    assert encode_binary(big) == arr.astype("<f2").tobytes()


@pytest.mark.parametrize(("datatype", "field", "value"), [
    ("INT8", "int_contents", 300), ("INT16", "int_contents", -70_000),
    ("UINT8", "uint_contents", 256), ("UINT16", "uint_contents", 70_000),
])
def test_grpc_typed_contents_out_of_range_are_refused(datatype: str, field: str,
                                                      value: int) -> None:
    """INT8/16 and UINT8/16 travel in 32-bit fields; a value they cannot hold was wrapped."""
    from tureen.codecs.oip_proto import decode_request
    from tureen.codecs.pb import inference_pb2 as pb

    msg = pb.ModelInferRequest(model_name="m")
    t = msg.inputs.add(name="x", datatype=datatype, shape=[2])
    getattr(t.contents, field).extend([1, value])
    with pytest.raises(InvalidRequestError, match=f"out of range for {datatype}"):
        decode_request(msg, {})
    ok = pb.ModelInferRequest(model_name="m")
    t = ok.inputs.add(name="x", datatype=datatype, shape=[2])
    getattr(t.contents, field).extend([1, 2])
    assert decode_request(ok, {}).inputs[0].data.tolist() == [1, 2]


@pytest.mark.parametrize(("shape", "data", "says"), [
    ([2, 2], np.zeros(3, dtype=np.float32), r"declared shape \[2, 2\] \(4 elements\) but its "
                                            "data holds 3"),
    ([np.int64(2)], np.zeros(5), r"declared shape \[2\] \(2 elements\) but its data holds 5"),
    ([0], np.zeros(1), "holds 1"),
])
def test_an_output_whose_size_is_not_its_shape_is_a_model_bug(shape: list[int], data: Any,
                                                               says: str) -> None:
    with pytest.raises(ValueError, match=says) as e:
        check_output_size("y", shape, data)
    assert "'y'" in str(e.value) and not isinstance(e.value, InvalidRequestError)
    check_output_size("y", [int(np.size(data))], data)  # as many elements: fine


@pytest.mark.parametrize("dtype", [
    *OIP_NUMPY.values(), ">f4", "<f8", np.longlong, np.intc, "U3", "S2", "c8", "M8[s]", "m8",
    [("a", "f4")], np.dtype("f4", metadata={"k": 1}), ">i8", "V4",
])
def test_oip_datatype_of_answers_as_the_dtype_name(dtype: Any) -> None:
    """The dtype-keyed lookup names exactly what str(dtype) names; the rest is refused."""
    arr = np.zeros(1, dtype=dtype)
    if arr.dtype.kind in "OUS":
        expected: str | None = "BYTES"
    else:
        expected = NUMPY_OIP.get(str(arr.dtype))
    if expected is None:
        with pytest.raises(InvalidRequestError, match="no Open Inference Protocol datatype"):
            oip_datatype_of(arr)
    else:
        assert oip_datatype_of(arr) == expected
