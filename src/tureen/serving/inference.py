"""Transport-independent inference request and response types.

REST v2, the binary extension and gRPC all decode into ``InferRequest`` and encode from
``InferResponse``; tensors are numpy arrays. KServe v1 bodies stay plain dicts.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tureen.codecs.table import PANDAS_CONTENT_TYPE, columns_to_frame, frame_to_columns
from tureen.codecs.tensor import output_array, output_dtype
from tureen.errors import InvalidRequestError
from tureen.types import OIP_NUMPY, oip_datatype_of

NDArray = np.ndarray[Any, Any]
Parameters = dict[str, Any]


class UInt64(int):
    """An integer parameter that travels as ``uint64`` (OIP gRPC ``uint64_param``). Parameters
    are plain Python values — bool, int, float, str, bytes — except that an unsigned integer
    received over gRPC arrives as ``UInt64`` and goes back out as one; any int of 2**63 or
    more is sent as uint64 too."""

    def __repr__(self) -> str:
        return f"UInt64({int(self)})"


#: tensor parameters of the shared-memory extension (see serving.shm_tensors)
SHM_REGION = "shared_memory_region"
SHM_BYTE_SIZE = "shared_memory_byte_size"
SHM_OFFSET = "shared_memory_offset"


#: the data of an input in shared memory until the data plane reads it from the region
IN_SHARED_MEMORY: NDArray = np.empty(0, dtype=np.uint8)


def in_shared_memory(params: Container[str]) -> bool:
    """Whether a tensor's parameters reference shared memory (its data is not inline; an
    output written there is answered without data)."""
    return SHM_REGION in params or SHM_BYTE_SIZE in params


@dataclass(slots=True)
class TensorSpec:
    """A named input or output of a model signature; -1 in ``shape`` is any size."""

    name: str
    datatype: str
    shape: list[int]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


@dataclass(slots=True)
class InferInput:
    """One input tensor. Positional order differs from KServe's ``InferInput``; the keyword
    names (``name``, ``shape``, ``datatype``, ``data``, ``parameters``) are the same."""

    name: str
    datatype: str
    shape: list[int]
    data: NDArray
    parameters: Parameters = field(default_factory=dict)

    def as_numpy(self) -> NDArray:
        return self.data


@dataclass(slots=True)
class RequestedOutput:
    name: str
    binary_data: bool | None = None
    parameters: Parameters = field(default_factory=dict)


@dataclass(slots=True)
class InferRequest:
    """An OIP inference request. ``headers`` are the lower-cased request headers."""

    model_name: str
    inputs: list[InferInput]
    id: str | None = None
    model_version: str | None = None
    outputs: list[RequestedOutput] | None = None
    parameters: Parameters = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def is_table(self) -> bool:
        return self.parameters.get("content_type") == PANDAS_CONTENT_TYPE

    def get_input_by_name(self, name: str) -> InferInput | None:
        """KServe's lookup: the input called ``name``, or None."""
        return next((i for i in self.inputs if i.name == name), None)

    def input(self, name: str) -> InferInput:
        for i in self.inputs:
            if i.name == name:
                return i
        raise InvalidRequestError(
            f"request has no input {name!r}; it has {[i.name for i in self.inputs]}."
        )

    def as_numpy(self) -> NDArray:
        """The single input as an array (a model with one input reads this)."""
        if len(self.inputs) != 1:
            raise InvalidRequestError(
                f"this model takes one input tensor but the request has {len(self.inputs)}; "
                "send one input, or content_type 'pd' for one input per column."
            )
        return self.inputs[0].data

    def as_dataframe(self) -> pd.DataFrame:
        """Each input as one column (``content_type = "pd"``)."""
        return columns_to_frame([(i.name, i.data) for i in self.inputs])


@dataclass(slots=True)
class InferOutput:
    """One output tensor. ``data`` may be a numpy array or, as a model often returns it, a
    (nested) list of values of ``datatype``; a list's ``shape`` may be None (its nesting's).
    An array of another dtype is cast to ``datatype`` when its values fit (float64 to FP32).
    Data that does not fit ``datatype`` and ``shape`` raises ``ValueError``."""

    name: str
    datatype: str
    shape: list[int]
    data: NDArray
    parameters: Parameters = field(default_factory=dict)

    def __post_init__(self) -> None:
        data = self.data
        if not isinstance(data, np.ndarray):
            self.data, self.shape = output_array(self.name, self.datatype, self.shape, data)
        elif data.dtype is not OIP_NUMPY.get(self.datatype):  # the same dtype: one check
            self.data = output_dtype(self.name, self.datatype, data)

    def as_numpy(self) -> NDArray:
        return self.data

    @classmethod
    def of(cls, name: str, data: Any) -> InferOutput:
        arr = data if isinstance(data, np.ndarray) else np.asarray(data)
        if arr.dtype.kind == "U":
            arr = np.array([s.encode() for s in arr.reshape(-1)], dtype=object).reshape(arr.shape)
        return cls(name, oip_datatype_of(arr), list(arr.shape), arr)


@dataclass(slots=True)
class InferResponse:
    model_name: str
    outputs: list[InferOutput]
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters = field(default_factory=dict)

    def get_output_by_name(self, name: str) -> InferOutput | None:
        return next((o for o in self.outputs if o.name == name), None)

    @classmethod
    def of(
        cls,
        model_name: str,
        result: Any,
        output_names: list[str] | None = None,
        model_version: str | None = None,
        id: str | None = None,
    ) -> InferResponse:
        """Wrap an array, a list of arrays, a dict name→array or a DataFrame as outputs."""
        outs: list[InferOutput]
        params: Parameters = {}
        if isinstance(result, pd.DataFrame):
            outs = [InferOutput(n, dt, list(a.shape), a) for n, dt, a in frame_to_columns(result)]
            params["content_type"] = PANDAS_CONTENT_TYPE
        elif isinstance(result, dict):
            outs = [InferOutput.of(str(k), v) for k, v in result.items()]
        elif isinstance(result, list | tuple) and result and all(
            isinstance(r, np.ndarray) for r in result
        ):
            names = output_names or []
            outs = [
                InferOutput.of(names[i] if i < len(names) else f"output-{i}", r)
                for i, r in enumerate(result)
            ]
        else:
            name = output_names[0] if output_names else "output-0"
            outs = [InferOutput.of(name, result)]
        return cls(model_name, outs, model_version, id, params)
