"""Protobuf messages ⇄ ``InferRequest`` / ``InferResponse`` (typed contents and raw bytes)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tureen.codecs.pb import inference_pb2 as pb
from tureen.codecs.tensor import (
    check_datatype,
    check_shape,
    decode_binary,
    element_count,
    encode_binary,
)
from tureen.errors import InvalidRequestError
from tureen.serving.inference import (
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    RequestedOutput,
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


def param_value(p: Any) -> Any:
    which = p.WhichOneof("parameter_choice")
    return getattr(p, which) if which else None


def set_param(p: Any, value: Any) -> None:
    if isinstance(value, bool):
        p.bool_param = value
    elif isinstance(value, int):
        p.int64_param = value
    elif isinstance(value, float):
        p.double_param = value
    else:
        p.string_param = str(value)


def _params(m: Any) -> dict[str, Any]:
    return {k: param_value(v) for k, v in m.items()} if len(m) else {}


def decode_request(msg: pb.ModelInferRequest, headers: dict[str, str]) -> InferRequest:
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise InvalidRequestError(
            f"raw_input_contents has {len(raw)} entries for {len(msg.inputs)} inputs; send one "
            "raw entry per input, or typed contents for all inputs."
        )
    if not msg.inputs:
        raise InvalidRequestError("ModelInferRequest has no inputs; add at least one.")
    inputs: list[InferInput] = []
    for i, t in enumerate(msg.inputs):
        shape = check_shape(t.name, list(t.shape))
        dt = check_datatype(t.name, t.datatype)
        if raw:
            data = decode_binary(t.name, t.datatype, shape, raw[i])
        else:
            field = CONTENTS_FIELD.get(t.datatype)
            if field is None:
                raise InvalidRequestError(
                    f"input {t.name!r} is {t.datatype}, which has no typed contents field; send "
                    "it in raw_input_contents."
                )
            values = getattr(t.contents, field)
            if len(values) != element_count(shape):
                raise InvalidRequestError(
                    f"input {t.name!r} has shape {shape} ({element_count(shape)} elements) but "
                    f"{field} holds {len(values)}; make the shape match the data."
                )
            if t.datatype == "BYTES":
                data = np.empty(len(values), dtype=object)
                data[:] = list(values)
                data = data.reshape(shape)
            else:
                data = np.array(values, dtype=dt).reshape(shape)
        inputs.append(InferInput(t.name, t.datatype, shape, data, _params(t.parameters)))
    outputs = None
    if msg.outputs:
        outputs = []
        for o in msg.outputs:
            op = _params(o.parameters)
            outputs.append(RequestedOutput(o.name, None, op))
    return InferRequest(
        msg.model_name, inputs, msg.id or None, msg.model_version or None, outputs,
        _params(msg.parameters), headers,
    )


def encode_response(resp: InferResponse, raw: bool) -> pb.ModelInferResponse:
    out = pb.ModelInferResponse(
        model_name=resp.model_name, model_version=resp.model_version or "", id=resp.id or ""
    )
    for k, v in resp.parameters.items():
        set_param(out.parameters[k], v)
    use_raw = raw or any(o.datatype not in CONTENTS_FIELD for o in resp.outputs)
    for o in resp.outputs:
        t = out.outputs.add(name=o.name, datatype=o.datatype, shape=o.shape)
        for k, v in o.parameters.items():
            set_param(t.parameters[k], v)
        if use_raw:
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
    for k, v in request.parameters.items():
        set_param(msg.parameters[k], v)
    for i in request.inputs:
        t = msg.inputs.add(name=i.name, datatype=i.datatype, shape=i.shape)
        for k, v in i.parameters.items():
            set_param(t.parameters[k], v)
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
