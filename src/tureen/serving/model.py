"""``Model``: the KServe-compatible unit of serving.

Subclass it and override ``load`` and ``predict`` (and optionally ``preprocess``,
``postprocess``, ``explain``). Each handler may be sync or async and receives the request
headers; sync handlers run in a thread pool, never on the event loop. ``predict`` receives a
plain dict for KServe v1 requests and an ``InferRequest`` for OIP REST and gRPC.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from tureen.codecs.v1 import instances_of, instances_to_array, instances_to_frame
from tureen.errors import InvalidRequestError
from tureen.serving.inference import InferRequest, TensorSpec
from tureen.serving.signature import conform_frame
from tureen.types import OIP_NUMPY

Headers = dict[str, str]


class Model:
    """A named, versioned model. ``ready`` turns True when ``load`` succeeds."""

    #: shown as ``platform`` in OIP model metadata
    platform: str = ""
    #: what a caller needs to call it or see it (``tureen.auth.Action``): a feature service
    #: served as a model is a feature read, everything else a predict
    action: str = "predict"

    def __init__(self, name: str, version: str = "1") -> None:
        self.name = name
        self.version = version
        self.ready = False
        #: the signature: used for metadata and to validate OIP requests (empty: not checked)
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        #: column names in the order the model takes them (runtimes set them from the fitted
        #: estimator); table requests are mapped to them by name (see serving.signature)
        self.feature_names: list[str] = []
        #: adaptive batching: > 1 turns it on for v1, v2 and gRPC alike
        self.max_batch_size = 0
        self.max_latency_ms = 5.0
        #: sync stages run on the event loop while their recent average stays under this
        #: many ms (0: always in a worker thread, as KServe does; see serving.inline)
        self.inline_budget_ms = 0.0

    def load(self) -> bool:
        self.ready = True
        return self.ready

    def unload(self) -> None:
        """Free what ``load`` acquired; called once no request uses this model any more."""

    def preprocess(self, payload: Any, headers: Headers | None = None) -> Any:
        return payload

    def predict(self, payload: Any, headers: Headers | None = None) -> Any:
        raise NotImplementedError(f"model {self.name!r} does not implement predict")

    def postprocess(self, result: Any, headers: Headers | None = None) -> Any:
        return result

    # helpers for models that take one table or one tensor

    def decode(self, payload: Any) -> np.ndarray[Any, Any] | pd.DataFrame:
        """A v1 body, an InferRequest or an array as one array (or a DataFrame for tables)."""
        if isinstance(payload, np.ndarray | pd.DataFrame):
            return payload
        if isinstance(payload, InferRequest):
            if payload.is_table or len(payload.inputs) > 1:
                return conform_frame(self, payload.as_dataframe())
            return payload.as_numpy()
        inst = instances_of(payload)
        if inst and isinstance(inst[0], dict):
            return conform_frame(self, instances_to_frame(inst))
        dtype = OIP_NUMPY.get(self.inputs[0].datatype) if self.inputs else None
        if dtype is not None and dtype.kind == "O":
            dtype = None
        arr = instances_to_array(inst, dtype)
        if len(self.inputs) == 1 and self.inputs[0].shape:
            want = self.inputs[0].shape
            if arr.ndim != len(want) or any(
                w != -1 and w != d for w, d in zip(want[1:], arr.shape[1:], strict=True)
            ):
                raise InvalidRequestError(
                    f"model {self.name!r} expects instances of shape {want[1:]} (-1 is any "
                    f"size) but got rows of shape {list(arr.shape[1:])}; fix the rows."
                )
        return arr


@runtime_checkable
class ServesVersions(Protocol):
    """A model that routes each request to one of several versions of itself (a deployment
    with a canary): metadata lists these versions, ``/versions/{v}/infer`` reaches one, and
    its responses name the version that answered."""

    def served_versions(self) -> list[str]: ...


@runtime_checkable
class Explainer(Protocol):
    """A model that can explain (``POST /v1/models/{name}:explain``)."""

    def explain(self, payload: Any, headers: Headers | None = None) -> Any: ...
