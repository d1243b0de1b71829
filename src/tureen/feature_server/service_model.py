"""A FeatureService served as a model: entity keys in, one typed tensor per feature out.

Over OIP (REST and gRPC) the inputs are the join keys (and any request-time fields the
service's on-demand views need), one tensor each of the entity's dtype; the outputs are the
service's features in registry order, each with its registry datatype. Missing values are
NaN in float outputs and 0/False elsewhere; such an output carries the parameter
``statuses`` (comma-separated Feast statuses per row). Over KServe v1, ``instances`` are
objects with the join keys (or bare key values when the entity has one join key) and
``predictions`` are one object per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tureen.codecs.typed import key_values, typed_column
from tureen.codecs.v1 import instances_of
from tureen.definitions import Field
from tureen.errors import InvalidRequestError
from tureen.feature_refs import resolve
from tureen.serving.inference import InferOutput, InferRequest, InferResponse, TensorSpec
from tureen.serving.model import Headers, Model
from tureen.store import FeatureStore


class FeatureServiceModel(Model):
    platform = "tureen-feature-service"
    action = "read_features"

    def __init__(self, store: FeatureStore, service: str) -> None:
        super().__init__(service)
        self.store = store
        self.service = service
        self.entity_fields: list[Field] = []

    def load(self) -> bool:
        plan = resolve(self.store.snapshot(), self.service)
        self.entity_fields = plan.key_fields + list(plan.request_fields)
        self.inputs = [TensorSpec(f.name, f.dtype.oip, [-1]) for f in self.entity_fields]
        self.outputs = [TensorSpec(f.name, f.dtype.oip, [-1]) for f in plan.output_fields]
        self.ready = True
        return True

    def _entities(self, payload: Any) -> tuple[dict[str, list[Any]], bool]:
        if isinstance(payload, InferRequest):
            given = {i.name: i for i in payload.inputs}
            cols: dict[str, list[Any]] = {}
            for f in self.entity_fields:
                inp = given.get(f.name)
                if inp is None:
                    raise InvalidRequestError(
                        f"feature service {self.service!r} needs input {f.name!r} "
                        f"({f.dtype.oip}); the request has {sorted(given)}."
                    )
                cols[f.name] = key_values(inp.data, f.dtype, f.name)
            return cols, True
        rows = instances_of(payload)
        if rows and not isinstance(rows[0], dict):
            if len(self.entity_fields) != 1:
                raise InvalidRequestError(
                    f"feature service {self.service!r} needs "
                    f"{[f.name for f in self.entity_fields]} per row; send instances as "
                    'objects, e.g. {"instances": [{"' + self.entity_fields[0].name + '": ...}]}.'
                )
            return {self.entity_fields[0].name: list(rows)}, False
        cols = {}
        for f in self.entity_fields:
            try:
                cols[f.name] = [r[f.name] for r in rows]
            except (KeyError, TypeError):
                raise InvalidRequestError(
                    f"every instance needs {f.name!r} for feature service {self.service!r}."
                ) from None
        return cols, False

    async def predict(self, payload: Any, headers: Headers | None = None) -> Any:
        entities, oip = self._entities(payload)
        resp = await self.store.get_online_features_async(
            feature_service=self.service, entity_rows=entities)
        values = resp.to_dict()
        names = resp.feature_names
        if not oip:
            n = len(resp)
            return {"predictions": [{k: values[k][i] for k in names} for i in range(n)]}
        statuses = resp.statuses
        outputs: list[InferOutput] = []
        fields = resp.fields[len(resp.join_keys):]
        for f in fields:
            arr, missing = typed_column(values[f.name], f.dtype)
            out = InferOutput(f.name, f.dtype.oip, [len(arr)], arr)
            if missing:
                out.parameters["statuses"] = ",".join(statuses[f.name])
            outputs.append(out)
        return InferResponse(self.name, outputs)


def feature_service_models(store: FeatureStore,
                           services: Sequence[str] | None = None) -> list[FeatureServiceModel]:
    """One model per FeatureService of the registry (or the named ones)."""
    names = list(services) if services is not None else sorted(
        store.snapshot().feature_services)
    return [FeatureServiceModel(store, n) for n in names]
