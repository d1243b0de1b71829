"""What the data plane answers: a model's result as an ``InferResponse`` or a v1 body, and
how many inferences a request counts for."""

from __future__ import annotations

from typing import Any

from tureen.codecs.tensor import check_output_size
from tureen.codecs.v1 import to_predictions
from tureen.errors import InvalidRequestError
from tureen.serving.inference import InferOutput, InferRequest, InferResponse
from tureen.serving.model import Model


def to_response(model: Model, request: InferRequest, result: Any) -> InferResponse:
    """``result`` as the OIP response to ``request`` (only the outputs it asked for). An
    output whose data does not hold its declared shape's element count is ``ValueError``
    (checked here, once, before any transport encodes it)."""
    if isinstance(result, InferResponse):
        response = result
        response.model_name = response.model_name or model.name
    else:
        if isinstance(result, dict) and "predictions" in result and len(result) <= 2:
            result = result["predictions"]
        response = InferResponse.of(model.name, result, [o.name for o in model.outputs])
    # a model that answers with one of several versions (a deployment's canary) says which
    response.model_version = response.model_version or model.version
    response.id = request.id
    if request.outputs:
        by_name = {o.name: o for o in response.outputs}
        picked: list[InferOutput] = []
        for r in request.outputs:
            out = by_name.get(r.name)
            if out is None:
                raise InvalidRequestError(
                    f"model {model.name!r} has no output {r.name!r}; its outputs are "
                    f"{list(by_name)}. Request one of those or none for all."
                )
            picked.append(out)
        response.outputs = picked
    for o in response.outputs:
        check_output_size(o.name, o.shape, o.data)
    return response


def rows_of_request(model: Model, payload: Any) -> int:
    """Inferences in one request: its rows for a batching model, else 1 (as Triton counts)."""
    if model.max_batch_size <= 0:
        return 1
    if isinstance(payload, InferRequest):
        shape = payload.inputs[0].shape if payload.inputs else []
        return int(shape[0]) if shape else 1
    if isinstance(payload, dict) and isinstance(payload.get("instances"), list):
        return len(payload["instances"])
    return 1


def v1_body(result: Any) -> Any:
    if isinstance(result, dict):
        return result
    if isinstance(result, InferResponse):
        if len(result.outputs) == 1:
            return {"predictions": to_predictions(result.outputs[0].data)}
        return {"predictions": {o.name: to_predictions(o.data) for o in result.outputs}}
    return {"predictions": to_predictions(result)}
