"""OIP gRPC correctness: no input given twice, every parameter type kept both ways, replies in
raw_output_contents as Triton's clients read them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tureen.codecs import oip_proto as convert
from tureen.codecs.pb import inference_pb2 as pb
from tureen.errors import InvalidRequestError
from tureen.serving import DataPlane, InferOutput, InferResponse, Model, UInt64
from tureen.transports.grpc.handlers import InferenceServicer

from .conftest import loaded


def _typed_request() -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name="simple")
    for name in ("INPUT0", "INPUT1"):
        t = msg.inputs.add(name=name, datatype="INT32", shape=[1, 4])
        t.contents.int_contents.extend([1, 2, 3, 4])
    return msg


def test_typed_and_raw_contents_for_one_input_is_invalid_argument() -> None:
    """The spec, Triton and KServe refuse it; silently taking one of the two is a wrong
    answer waiting to happen."""
    msg = _typed_request()
    msg.raw_input_contents.extend([np.arange(4, dtype=np.int32).tobytes()] * 2)
    with pytest.raises(InvalidRequestError,
                       match="contents field must not be specified when using "
                             "raw_input_contents for 'INPUT0' for model 'simple'"):
        convert.decode_request(msg, {})


PARAMS: dict[str, Any] = {
    "flag": True, "neg": -(2**63), "small": 7, "big": UInt64(2**64 - 1), "unsigned": UInt64(5),
    "ratio": 0.25, "text": "héllo",
}


def _wire_params(m: Any) -> dict[str, tuple[str, Any]]:
    return {k: (v.WhichOneof("parameter_choice"), convert.param_value(v)) for k, v in m.items()}


def test_every_parameter_type_survives_both_directions() -> None:
    msg = _typed_request()
    for key, (field, value) in {
        "flag": ("bool_param", True), "neg": ("int64_param", -(2**63)),
        "small": ("int64_param", 7), "big": ("uint64_param", 2**64 - 1),
        "unsigned": ("uint64_param", 5), "ratio": ("double_param", 0.25),
        "text": ("string_param", "héllo"),
    }.items():
        setattr(msg.parameters[key], field, value)
    req = convert.decode_request(msg, {})
    assert req.parameters == PARAMS
    assert isinstance(req.parameters["big"], UInt64)
    assert isinstance(req.parameters["unsigned"], UInt64)
    assert not isinstance(req.parameters["small"], UInt64)
    # a model hands them back: the wire types are the ones that came in
    resp = InferResponse("simple", [], parameters=dict(req.parameters))
    out = convert.encode_response(resp, raw=True)
    assert _wire_params(out.parameters) == _wire_params(msg.parameters)
    # and as the client side of tureen sends them
    back = convert.encode_request(req)
    assert _wire_params(back.parameters) == _wire_params(msg.parameters)


def test_an_int_of_2_63_or_more_goes_out_as_uint64_and_out_of_range_is_refused() -> None:
    out = convert.encode_response(InferResponse("m", [], parameters={"n": 2**63}), raw=True)
    assert _wire_params(out.parameters) == {"n": ("uint64_param", 2**63)}
    with pytest.raises(InvalidRequestError, match="parameter 'n'"):
        convert.encode_response(InferResponse("m", [], parameters={"n": 2**64}), raw=True)


class Echo(Model):
    """Returns its inputs, and its request parameters as response parameters."""

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        outputs = [InferOutput(i.name, i.datatype, i.shape, i.data) for i in payload.inputs]
        return InferResponse(self.name, outputs, parameters=dict(payload.parameters))


@pytest.fixture
def servicer() -> InferenceServicer:
    dp = DataPlane()
    dp.register(loaded(Echo("simple")))
    return InferenceServicer(dp)


async def test_replies_use_raw_output_contents_even_for_typed_requests(
        servicer: InferenceServicer) -> None:
    """Triton's grpc_explicit_* examples send typed contents and read raw_output_contents."""
    resp = await servicer.ModelInfer(_typed_request(), None)
    assert len(resp.raw_output_contents) == 2
    assert np.frombuffer(resp.raw_output_contents[0], dtype=np.int32).tolist() == [1, 2, 3, 4]
    assert not resp.outputs[0].HasField("contents")


async def test_typed_replies_on_request(servicer: InferenceServicer) -> None:
    msg = _typed_request()
    msg.parameters["typed_output_contents"].bool_param = True
    resp = await servicer.ModelInfer(msg, None)
    assert not resp.raw_output_contents
    assert list(resp.outputs[0].contents.int_contents) == [1, 2, 3, 4]


async def test_parameters_round_trip_through_the_data_plane(servicer: InferenceServicer) -> None:
    msg = _typed_request()
    msg.parameters["big"].uint64_param = 2**64 - 1  # crashed with INTERNAL before
    msg.parameters["neg"].int64_param = -5
    resp = await servicer.ModelInfer(msg, None)
    assert _wire_params(resp.parameters) == {"big": ("uint64_param", 2**64 - 1),
                                             "neg": ("int64_param", -5)}
