"""OIP REST bodies (JSON plus the binary tensor data extension) ⇄ InferRequest/InferResponse."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from tureen.codecs.tensor import (
    check_shape,
    decode_binary,
    decode_json,
    encode_binary,
    encode_json,
    raw_view,
)
from tureen.errors import InvalidRequestError
from tureen.serving.inference import (
    IN_SHARED_MEMORY,
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    RequestedOutput,
    in_shared_memory,
)

HEADER_LENGTH = "inference-header-content-length"
_NUMPY_JSON = orjson.OPT_SERIALIZE_NUMPY


def loads(body: bytes | bytearray | memoryview, what: str = "request body") -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(
            f"{what} is not valid JSON ({exc}); send a JSON object."
        ) from None


def decode_request(
    body: bytes | bytearray,
    header_length: str | None,
    model_name: str,
    model_version: str | None,
    headers: dict[str, str],
) -> InferRequest:
    binary: memoryview | None = None
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            n = -1
        if not 0 <= n <= len(body):
            raise InvalidRequestError(
                f"Inference-Header-Content-Length is {header_length!r} but the body has "
                f"{len(body)} bytes; it must be the byte length of the JSON part."
            )
        view = memoryview(body)
        obj = loads(view[:n])
        binary = view[n:]
    else:
        obj = loads(body)
    if not isinstance(obj, dict):
        raise InvalidRequestError('an inference request is a JSON object with "inputs".')
    raw_inputs = obj.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidRequestError(
            'an inference request needs "inputs": a non-empty list of '
            '{"name", "datatype", "shape", "data"}.'
        )
    inputs: list[InferInput] = []
    offset = 0
    for i, t in enumerate(raw_inputs):
        if not isinstance(t, dict):
            raise InvalidRequestError(f"inputs[{i}] must be an object with name, datatype, shape.")
        name = t.get("name")
        datatype = t.get("datatype")
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise InvalidRequestError(f"inputs[{i}] needs a string 'name' and 'datatype'.")
        shape = check_shape(name, t.get("shape"))
        params = t.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidRequestError(f"input {name!r} parameters must be an object.")
        size = params.get("binary_data_size")
        if in_shared_memory(params):
            if size is not None or "data" in t:
                raise InvalidRequestError(
                    f"input {name!r} is in shared memory and carries data too; send one.")
            data = IN_SHARED_MEMORY  # the data plane reads it from the region
        elif size is not None:
            if binary is None or not isinstance(size, int) or offset + size > len(binary):
                raise InvalidRequestError(
                    f"input {name!r} says binary_data_size={size!r} but the binary part of the "
                    "body is missing or too short; set Inference-Header-Content-Length and send "
                    "the tensor bytes after the JSON."
                )
            data = decode_binary(name, datatype, shape, binary[offset:offset + size])
            offset += size
            params = {k: v for k, v in params.items() if k != "binary_data_size"}
        else:
            if "data" not in t:
                raise InvalidRequestError(
                    f"input {name!r} has neither 'data' nor parameters.binary_data_size."
                )
            data = decode_json(name, datatype, shape, t["data"])
        inputs.append(InferInput(name, datatype, shape, data, params))
    if binary is not None and offset != len(binary):
        raise InvalidRequestError(
            f"the body has {len(binary) - offset} binary bytes no input claims; make the "
            "binary_data_size values add up to the binary part."
        )
    outputs = None
    raw_outputs = obj.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise InvalidRequestError('"outputs" must be a list of {"name": ...}.')
        outputs = []
        for o in raw_outputs:
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise InvalidRequestError('each requested output is an object {"name": ...}.')
            op = o.get("parameters") or {}
            b = op.get("binary_data") if isinstance(op, dict) else None
            outputs.append(RequestedOutput(o["name"], None if b is None else bool(b), op))
    params = obj.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidRequestError('"parameters" must be an object.')
    rid = obj.get("id")
    return InferRequest(
        model_name, inputs, None if rid is None else str(rid), model_version, outputs, params,
        headers,
    )


def _json_data(arr: np.ndarray[Any, Any]) -> Any:
    if arr.dtype.kind in "OUS":
        return encode_json(arr)
    flat = arr.reshape(-1)
    if arr.dtype.kind == "f" and arr.dtype.itemsize == 2:
        return flat.astype(np.float32)
    return flat if flat.flags.c_contiguous else np.ascontiguousarray(flat)


def encode_response(
    response: InferResponse, request: InferRequest | None
) -> tuple[bytes, int | None]:
    """The body, and the JSON header length when some outputs are binary."""
    parts, n = encode_response_parts(response, request)
    return b"".join(parts), n


def encode_response_parts(
    response: InferResponse, request: InferRequest | None
) -> tuple[list[bytes | memoryview], int | None]:
    """The body as parts (JSON header, then one part per binary output) and the header length
    when some outputs are binary."""
    binary_default = bool(request.parameters.get("binary_data_output")) if request else False
    wanted: dict[str, bool | None] = {}
    if request is not None and request.outputs:
        wanted = {o.name: o.binary_data for o in request.outputs}
    outs: list[dict[str, Any]] = []
    blobs: list[bytes | memoryview] = []
    for o in response.outputs:
        b = wanted.get(o.name)
        binary = binary_default if b is None else b
        d: dict[str, Any] = {"name": o.name, "datatype": o.datatype, "shape": o.shape}
        params = dict(o.parameters)
        if in_shared_memory(params):
            pass  # written to the region the request named
        elif binary:
            raw = raw_view(o.data)
            blobs.append(raw)
            params["binary_data_size"] = len(raw)
        else:
            d["data"] = _json_data(o.data)
        if params:
            d["parameters"] = params
        outs.append(d)
    obj: dict[str, Any] = {"model_name": response.model_name, "outputs": outs}
    if response.model_version is not None:
        obj["model_version"] = response.model_version
    if response.id is not None:
        obj["id"] = response.id
    if response.parameters:
        obj["parameters"] = response.parameters
    head = orjson.dumps(obj, option=_NUMPY_JSON)
    if not blobs:
        return [head], None
    return [head, *blobs], len(head)


# client side (used by tureen.serving.clients to call remote predictors)


def encode_request(request: InferRequest, binary: bool = False) -> tuple[bytes, int | None]:
    """An OIP REST request body; with ``binary`` every tensor goes in the binary extension."""
    inputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for i in request.inputs:
        d: dict[str, Any] = {"name": i.name, "datatype": i.datatype, "shape": i.shape}
        params = dict(i.parameters)
        if binary:
            raw = encode_binary(i.data)
            blobs.append(raw)
            params["binary_data_size"] = len(raw)
        else:
            d["data"] = _json_data(i.data)
        if params:
            d["parameters"] = params
        inputs.append(d)
    obj: dict[str, Any] = {"inputs": inputs}
    if request.id is not None:
        obj["id"] = request.id
    params = dict(request.parameters)
    if binary:
        params["binary_data_output"] = True
    if params:
        obj["parameters"] = params
    if request.outputs:
        obj["outputs"] = [{"name": o.name, **({"parameters": o.parameters} if o.parameters else {})}
                          for o in request.outputs]
    head = orjson.dumps(obj, option=_NUMPY_JSON)
    if not blobs:
        return head, None
    return b"".join([head, *blobs]), len(head)


def decode_response(body: bytes, header_length: str | None) -> InferResponse:
    binary: memoryview | None = None
    if header_length is not None:
        n = int(header_length)
        obj = loads(body[:n], "response body")
        binary = memoryview(body)[n:]
    else:
        obj = loads(body, "response body")
    outs = []
    offset = 0
    for t in obj.get("outputs", []):
        params = dict(t.get("parameters") or {})
        size = params.pop("binary_data_size", None)
        shape = list(t["shape"])
        if size is not None and binary is not None:
            data = decode_binary(t["name"], t["datatype"], shape, binary[offset:offset + size])
            offset += size
        else:
            data = decode_json(t["name"], t["datatype"], shape, t.get("data", []))
        outs.append(InferOutput(t["name"], t["datatype"], shape, data, params))
    return InferResponse(obj.get("model_name", ""), outs, obj.get("model_version"), obj.get("id"),
                         obj.get("parameters") or {})
