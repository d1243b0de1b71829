"""Inputs read from and outputs written to shared memory regions, by request parameters.

The parameters (the same on REST and gRPC): ``shared_memory_region`` (the registered name),
``shared_memory_byte_size`` and the optional ``shared_memory_offset``. An input given this
way carries no data of its own; an output asked for this way is written into the region and
answered without data.
"""

from __future__ import annotations

from tureen.codecs.tensor import decode_binary, raw_view
from tureen.errors import InvalidRequestError
from tureen.serving.inference import (
    SHM_BYTE_SIZE,
    SHM_OFFSET,
    SHM_REGION,
    InferRequest,
    InferResponse,
    Parameters,
    in_shared_memory,
)
from tureen.serving.shared_memory import SharedMemoryRegistry

KEYS = (SHM_REGION, SHM_BYTE_SIZE, SHM_OFFSET)


def reference(tensor: str, params: Parameters) -> tuple[str, int, int] | None:
    """(region, offset, byte size) when ``params`` reference shared memory, else None."""
    if SHM_REGION not in params and SHM_BYTE_SIZE not in params:
        if SHM_OFFSET in params:
            raise InvalidRequestError(
                f"tensor {tensor!r} has shared_memory_offset without shared_memory_region "
                "and shared_memory_byte_size; send all of them or none.")
        return None
    region, size = params.get(SHM_REGION), params.get(SHM_BYTE_SIZE)
    offset = params.get(SHM_OFFSET, 0)
    if not isinstance(region, str) or region == "":
        raise InvalidRequestError(
            f"tensor {tensor!r} has shared_memory_byte_size but no shared_memory_region; "
            "name the registered region.")
    for field, value in ((SHM_BYTE_SIZE, size), (SHM_OFFSET, offset)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidRequestError(
                f"tensor {tensor!r} has {field} {value!r}; it must be a non-negative integer.")
    assert isinstance(size, int) and isinstance(offset, int)
    return region, offset, size


def uses_shared_memory(request: InferRequest) -> bool:
    return any(in_shared_memory(i.parameters) for i in request.inputs) or \
        any(in_shared_memory(o.parameters) for o in request.outputs or ())


def _registry(registry: SharedMemoryRegistry | None) -> SharedMemoryRegistry:
    if registry is None:
        raise InvalidRequestError(
            "system shared memory is off on this server; start it with --allow_shared_memory "
            "(same-host clients only), or send the tensor data in the request.")
    return registry


def attach_inputs(registry: SharedMemoryRegistry | None, request: InferRequest) -> None:
    """Replace each shared-memory input's data with its (read-only, zero-copy) view."""
    for inp in request.inputs:
        ref = reference(inp.name, inp.parameters)
        if ref is None:
            continue
        view = _registry(registry).read(*ref)
        inp.data = decode_binary(inp.name, inp.datatype, inp.shape, view)
        inp.parameters = {k: v for k, v in inp.parameters.items() if k not in KEYS}


def write_outputs(registry: SharedMemoryRegistry | None, request: InferRequest,
                  response: InferResponse) -> None:
    """Write the outputs the request asked for in shared memory; they answer without data."""
    wanted = {o.name: o for o in request.outputs or ()}
    for out in response.outputs:
        asked = wanted.get(out.name)
        ref = reference(out.name, asked.parameters) if asked is not None else None
        if ref is None:
            continue
        region, offset, size = ref
        written = _registry(registry).write(region, offset, size, raw_view(out.data))
        out.parameters = {**out.parameters, SHM_REGION: region, SHM_OFFSET: offset,
                          SHM_BYTE_SIZE: written}

