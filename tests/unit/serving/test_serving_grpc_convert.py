"""gRPC messages ⇄ InferRequest/InferResponse for every datatype, typed and raw contents."""

from __future__ import annotations

from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tureen.codecs import oip_proto as convert
from tureen.codecs.pb import inference_pb2 as pb
from tureen.errors import InvalidRequestError
from tureen.serving import InferInput, InferOutput, InferRequest, InferResponse
from tureen.types import OIP_NUMPY

NUMERIC = [k for k in OIP_NUMPY if k != "BYTES"]
shapes = hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=4)


def arrays(datatype: str) -> st.SearchStrategy[np.ndarray[Any, Any]]:
    if datatype == "BYTES":
        return shapes.flatmap(lambda s: st.lists(st.binary(max_size=5), min_size=int(np.prod(s)),
                                                 max_size=int(np.prod(s))).map(
            lambda xs: np.array([*xs, b""], dtype=object)[:-1].reshape(s)))
    return hnp.arrays(OIP_NUMPY[datatype], shapes)


def same(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))


@pytest.mark.parametrize("raw", [True, False])
@pytest.mark.parametrize("datatype", [*NUMERIC, "BYTES"])
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_response_round_trip(datatype: str, raw: bool, data: st.DataObject) -> None:
    arr = data.draw(arrays(datatype))
    resp = InferResponse("m", [InferOutput("o", datatype, list(arr.shape), arr)], "1", "id")
    msg = pb.ModelInferResponse.FromString(convert.encode_response(resp, raw).SerializeToString())
    back = convert.decode_response(msg)
    assert back.model_version == "1" and back.id == "id"
    out = back.outputs[0]
    assert out.datatype == datatype and same(out.data, arr)
    if datatype != "BYTES":
        assert out.data.dtype == arr.dtype


@pytest.mark.parametrize("datatype", [*NUMERIC, "BYTES"])
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_request_round_trip_raw(datatype: str, data: st.DataObject) -> None:
    arr = data.draw(arrays(datatype))
    req = InferRequest("m", [InferInput("x", datatype, list(arr.shape), arr)],
                       parameters={"content_type": "np", "n": 3, "f": 0.5, "b": True})
    msg = pb.ModelInferRequest.FromString(convert.encode_request(req).SerializeToString())
    back = convert.decode_request(msg, {})
    assert back.parameters == {"content_type": "np", "n": 3, "f": 0.5, "b": True}
    assert same(back.inputs[0].data, arr)


def test_typed_contents_errors() -> None:
    msg = pb.ModelInferRequest(model_name="m")
    t = msg.inputs.add(name="x", datatype="FP16", shape=[1])
    with pytest.raises(InvalidRequestError, match="raw_input_contents"):
        convert.decode_request(msg, {})
    t.datatype = "INT32"
    t.contents.int_contents.extend([1, 2])
    with pytest.raises(InvalidRequestError, match="holds 2"):
        convert.decode_request(msg, {})
    msg.raw_input_contents.extend([b"", b""])
    with pytest.raises(InvalidRequestError, match="must not be specified when using raw"):
        convert.decode_request(msg, {})
    t.ClearField("contents")
    with pytest.raises(InvalidRequestError, match="one raw entry per input"):
        convert.decode_request(msg, {})


class _Ctx:
    def __init__(self, md: tuple[tuple[str, str], ...]) -> None:
        self.md = md
        self.trailing: tuple[tuple[str, str], ...] = ()

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.md

    def set_trailing_metadata(self, md: tuple[tuple[str, str], ...]) -> None:
        self.trailing = md

    def peer(self) -> str:
        return "ipv4:127.0.0.1:5000"

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}  # a plaintext call: no client certificate


async def test_grpc_metadata_reaches_the_model_as_headers() -> None:
    from tureen.serving import DataPlane, Model
    from tureen.serving.guard import GuardChain
    from tureen.transports.grpc.servicer import InferenceServicer, guarded

    seen: list[dict[str, str]] = []

    class Seer(Model):
        async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
            seen.append(dict(headers or {}))
            return payload.as_numpy()

    m = Seer("seer")
    m.load()
    dp = DataPlane()
    dp.register(m)
    req = pb.ModelInferRequest(model_name="seer")
    req.inputs.add(name="x", datatype="INT32", shape=[1]).contents.int_contents.append(7)
    ctx = _Ctx((("x-request-id", "g-1"), ("x-tenant", "acme"), ("bin-bin", b"\0")))  # type: ignore[arg-type]
    call = guarded("ModelInfer", InferenceServicer(dp).ModelInfer, GuardChain())
    resp = await call(req, ctx)
    assert np.frombuffer(resp.raw_output_contents[0], dtype=np.int32).tolist() == [7]
    assert seen[0]["x-tenant"] == "acme" and "bin-bin" not in seen[0]
    assert ctx.trailing == (("x-request-id", "g-1"),)
    dp.close()


@pytest.mark.parametrize("shape", [[-1, 10], [1, -10], [0, 2**62], [2**21, 2**21, 2**21],
                                   [1] * 33])
def test_a_shape_no_tensor_can_have_is_a_client_mistake(shape: list[int]) -> None:
    msg = pb.ModelInferRequest(model_name="m", raw_input_contents=[b""])
    msg.inputs.add(name="x", datatype="FP32", shape=shape)
    with pytest.raises(InvalidRequestError, match="'x'"):
        convert.decode_request(msg, {})


@pytest.mark.parametrize("shape", [[], [0], [0, 10], [3, 0, 2]])
def test_empty_and_scalar_shapes_decode(shape: list[int]) -> None:
    n = int(np.prod(shape))
    msg = pb.ModelInferRequest(model_name="m", raw_input_contents=[b"\0" * 4 * n])
    msg.inputs.add(name="x", datatype="FP32", shape=shape)
    (got,) = convert.decode_request(msg, {}).inputs
    assert got.shape == shape and got.data.shape == tuple(shape)
