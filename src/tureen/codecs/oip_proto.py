"""Protobuf messages ⇄ ``InferRequest`` / ``InferResponse`` (typed contents and raw bytes)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tureen.codecs.pb import inference_pb2 as pb
from tureen.codecs.tensor import (
    MAX_DIMS,
    MAX_ELEMENTS,
    check_datatype,
    check_range,
    check_shape,
    decode_binary,
    decode_checked,
    element_count,
    encode_binary,
)
from tureen.errors import InvalidRequestError
from tureen.serving.inference import (
    IN_SHARED_MEMORY,
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    RequestedOutput,
    UInt64,
    in_shared_memory,
)

# datatype -> field of InferTensorContents holding it (FP16 travels only as raw bytes)
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


_INT64 = (-(2**63), 2**63 - 1)
_UINT64_MAX = 2**64 - 1


def param_value(p: Any) -> Any:
    which = p.WhichOneof("parameter_choice")
    if which is None:
        return None
    value = getattr(p, which)
    return UInt64(value) if which == "uint64_param" else value


def set_param(p: Any, value: Any, key: str = "") -> None:
    """Set an ``InferParameter`` with the wire type that keeps ``value``: bool, int64,
    uint64 (``UInt64`` or any int of 2**63 and more), double or string."""
    if isinstance(value, bool):
        p.bool_param = value
    elif isinstance(value, int):
        if isinstance(value, UInt64) or value > _INT64[1]:
            if not 0 <= value <= _UINT64_MAX:
                raise InvalidRequestError(
                    f"parameter {key!r} = {value} does not fit an unsigned 64-bit integer.")
            p.uint64_param = value
        elif value < _INT64[0]:
            raise InvalidRequestError(
                f"parameter {key!r} = {value} does not fit a signed 64-bit integer.")
        else:
            p.int64_param = value
    elif isinstance(value, float):
        p.double_param = value
    elif isinstance(value, str):
        p.string_param = value
    else:
        raise InvalidRequestError(
            f"parameter {key!r} is a {type(value).__name__}; OIP gRPC parameters are booleans, "
            "64-bit integers, doubles or strings.")


def _set_params(target: Any, params: dict[str, Any]) -> None:
    for k, v in params.items():
        set_param(target[k], v, k)


def _params(m: Any) -> dict[str, Any]:
    return {k: param_value(v) for k, v in m.items()} if len(m) else {}


def _typed_contents(t: Any) -> bool:
    return bool(t.HasField("contents")) and t.contents.ByteSize() > 0


def _shape(name: str, dims: Any) -> list[int]:
    """A tensor's ``shape`` field (int64s) as ``check_shape`` admits it: the common case (no
    negative dimension, few enough, a product in bounds) costs two C calls."""
    shape: list[int] = dims[:]  # a slice is a list built in C; list() iterates to IndexError
    if (len(shape) <= MAX_DIMS and (not shape or min(shape) > 0)
            and math.prod(shape) <= MAX_ELEMENTS):
        return shape
    return check_shape(name, shape)  # a zero, or the error naming what is wrong


def decode_request(msg: pb.ModelInferRequest, headers: dict[str, str]) -> InferRequest:
    # repeated fields as lists, by slicing: iterating one (list(), for, zip) ends with an
    # IndexError whose message is formatted, and each read of the field builds a wrapper
    tensors = msg.inputs[:]
    if not tensors:
        raise InvalidRequestError("ModelInferRequest has no inputs; add at least one.")
    raw = msg.raw_input_contents
    params = [_params(t.parameters) for t in tensors]
    in_shm = [bool(p) and in_shared_memory(p) for p in params]
    if raw:
        for i, t in enumerate(tensors):
            if not in_shm[i] and _typed_contents(t):  # Triton's words: its clients look for them
                raise InvalidRequestError(
                    f"contents field must not be specified when using raw_input_contents for "
                    f"{t.name!r} for model {msg.model_name!r}; send each input's data either "
                    "in raw_input_contents or in contents, not both.")
        wanted = in_shm.count(False)
        if len(raw) != wanted:
            raise InvalidRequestError(
                f"raw_input_contents has {len(raw)} entries for {wanted} inputs (inputs in "
                "shared memory have none); send one raw entry per input, in order, or typed "
                "contents for all inputs."
            )
    inputs: list[InferInput] = []
    next_raw = 0
    for i, t in enumerate(tensors):  # (zip(..., strict=True) parses a keyword per call)
        shm = in_shm[i]
        name, datatype = t.name, t.datatype
        shape = _shape(name, t.shape)
        dt = check_datatype(name, datatype)
        if shm:
            if _typed_contents(t):
                raise InvalidRequestError(
                    f"input {name!r} is in shared memory and has contents too; send one.")
            data = IN_SHARED_MEMORY  # the data plane reads it from the region
        elif raw:
            data = decode_checked(name, datatype, dt, shape, raw[next_raw])
            next_raw += 1
        else:
            field = CONTENTS_FIELD.get(datatype)
            if field is None:
                raise InvalidRequestError(
                    f"input {name!r} is {datatype}, which has no typed contents field; send "
                    "it in raw_input_contents."
                )
            values = getattr(t.contents, field)
            if len(values) != element_count(shape):
                raise InvalidRequestError(
                    f"input {name!r} has shape {shape} ({element_count(shape)} elements) but "
                    f"{field} holds {len(values)}; make the shape match the data."
                )
            if datatype == "BYTES":
                data = np.empty(len(values), dtype=object)
                data[:] = list(values)
                data = data.reshape(shape)
            else:
                if dt.kind in "iu" and dt.itemsize < 4:  # INT8/16, UINT8/16 in 32-bit fields
                    check_range(name, datatype, np.asarray(values), dt)
                data = np.array(values, dtype=dt).reshape(shape)
        inputs.append(InferInput(name, datatype, shape, data, params[i]))
    outputs = None
    wanted_outputs = msg.outputs[:]
    if wanted_outputs:
        outputs = [RequestedOutput(o.name, None, _params(o.parameters)) for o in wanted_outputs]
    return InferRequest(
        msg.model_name, inputs, msg.id or None, msg.model_version or None, outputs,
        _params(msg.parameters), headers,
    )


TYPED_OUTPUTS = "typed_output_contents"


def wants_typed_outputs(request: InferRequest) -> bool:
    """Replies go in ``raw_output_contents`` (as Triton's) unless the request sets the
    parameter ``typed_output_contents: true``."""
    return request.parameters.get(TYPED_OUTPUTS) is True


def encode_response(resp: InferResponse, raw: bool = True) -> pb.ModelInferResponse:
    """``resp`` as a message: tensors in ``raw_output_contents`` (``raw``), else in typed
    contents where the datatype has a field (FP16 always raw). Outputs written to shared
    memory carry no data (an empty raw entry keeps the others' positions)."""
    out = pb.ModelInferResponse(
        model_name=resp.model_name, model_version=resp.model_version or "", id=resp.id or ""
    )
    if resp.parameters:
        _set_params(out.parameters, resp.parameters)
    use_raw = raw or any(o.datatype not in CONTENTS_FIELD for o in resp.outputs)
    for o in resp.outputs:
        t = out.outputs.add(name=o.name, datatype=o.datatype, shape=o.shape)
        if o.parameters:
            _set_params(t.parameters, o.parameters)
        if in_shared_memory(o.parameters):
            if use_raw:
                out.raw_output_contents.append(b"")
        elif use_raw:
            out.raw_output_contents.append(encode_binary(o.data))
        elif o.datatype == "BYTES":
            t.contents.bytes_contents.extend(
                v.encode() if isinstance(v, str) else bytes(v) for v in o.data.reshape(-1)
            )
        else:
            getattr(t.contents, CONTENTS_FIELD[o.datatype]).extend(o.data.reshape(-1).tolist())
    return out


# client side (tureen.serving.clients calls remote predictors with these)


def encode_request(request: InferRequest) -> pb.ModelInferRequest:
    """An InferRequest as a ModelInferRequest with raw input contents."""
    msg = pb.ModelInferRequest(
        model_name=request.model_name, model_version=request.model_version or "",
        id=request.id or "",
    )
    _set_params(msg.parameters, request.parameters)
    for i in request.inputs:
        t = msg.inputs.add(name=i.name, datatype=i.datatype, shape=i.shape)
        _set_params(t.parameters, i.parameters)
        msg.raw_input_contents.append(encode_binary(i.data))
    for o in request.outputs or ():
        msg.outputs.add(name=o.name)
    return msg


def decode_response(msg: pb.ModelInferResponse) -> InferResponse:
    outs = []
    raw = msg.raw_output_contents
    for idx, t in enumerate(msg.outputs):
        shape = list(t.shape)
        if raw:
            data = decode_binary(t.name, t.datatype, shape, raw[idx])
        else:
            values = getattr(t.contents, CONTENTS_FIELD.get(t.datatype, "bytes_contents"))
            data = np.array(list(values), dtype=check_datatype(t.name, t.datatype)).reshape(shape)
        outs.append(InferOutput(t.name, t.datatype, shape, data, _params(t.parameters)))
    return InferResponse(msg.model_name, outs, msg.model_version or None, msg.id or None,
                         _params(msg.parameters))
