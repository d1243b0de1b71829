"""``FeatureTransformer``: a configured Model that enriches requests with online features.

request (entity ids, any protocol) → [script.preprocess] → feature lookup → missing-value
policy → [script.preprocess after features] → predictor (in process or remote) →
[script.postprocess] → response (in the client's protocol).

``transformer.build.build_transformer`` picks the implementation: when features are read in
process and the predictor is an in-process model with sync stages, the whole chain is one
sync call (``fused``: inline when it is fast, else in a worker thread; no network);
otherwise (this class) every step is awaited on the event loop and blocking work runs in
threads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tureen.definitions import Field
from tureen.errors import ConfigError, InvalidRequestError
from tureen.serving.batching import Batcher
from tureen.serving.clients import PredictorClient, predictor_client, service_token
from tureen.serving.inference import InferResponse, TensorSpec
from tureen.serving.model import Headers, Model
from tureen.store import FeatureStore
from tureen.transformer.assemble import (
    apply_policy,
    as_columns,
    as_matrix,
    check_defaults,
    widest_datatype,
)
from tureen.transformer.config import TransformerConfig
from tureen.transformer.features import Columns, FeatureTable, LocalFeatures, RemoteFeatures
from tureen.transformer.predictor import (
    InProcessPredictor,
    ModelInput,
    RemotePredictor,
    describe_remote,
)
from tureen.transformer.request_rows import extract, from_columns, request_columns
from tureen.transformer.script import UserScript
from tureen.types import OIP_NUMPY

ModelResolver = Callable[[str], Model]
_DESCRIBE_EVERY_S = 5.0
# Split mode: while a predictor call is in flight, requests queue at most this long before
# their own call starts (they usually go as one call when the in-flight one returns).
_BATCH_WAIT_MS = 1.0
NDArray = np.ndarray[Any, Any]


class FeatureTransformer(Model):
    platform = "tureen-transformer"

    def __init__(
        self, config: TransformerConfig, *, store: FeatureStore | None = None,
        resolve_model: ModelResolver | None = None,
    ) -> None:
        super().__init__(config.name)
        self.config = config
        self.store = store
        self.resolve_model = resolve_model
        self.source: LocalFeatures | RemoteFeatures | None = None
        self.predictor: InProcessPredictor | RemotePredictor | None = None
        self.script: UserScript | None = None
        self.datatype = "FP64"
        self._declared_type = False
        self._described_at = 0.0
        self._request_fields: list[Field] = []
        self._request_names: set[str] = set()
        self._batcher: Batcher | None = None
        self._service_token = service_token()

    # ---- setup ----------------------------------------------------------------------------
    def load(self) -> bool:
        c = self.config
        self.source = self._build_source()
        self.source.load()
        check_defaults(c.missing.policy, c.missing.defaults, self.source.fields)
        self._request_fields = [f for f in self.source.needed if f.name not in self._join_keys()]
        self._request_names = {f.name for f in self._request_fields}
        if c.script is not None:
            self.script = UserScript(c.script.path, c.script.position)
        self.predictor = self._build_predictor()
        if isinstance(self.predictor, RemotePredictor) and c.max_batch_rows > 1:
            self._batcher = Batcher(self._call_remote, c.max_batch_rows, _BATCH_WAIT_MS)
        if c.input_format == "tensor":
            self.datatype = c.predictor.input_datatype or widest_datatype(self._model_fields())
            self._declared_type = c.predictor.input_datatype is not None
            self._adopt_signature()
        if self.script is None or self.script.position != "before_features":
            self.inputs = [
                TensorSpec(c.entity_keys.get(f.name, f.name), f.dtype.oip, [-1])
                for f in self.source.needed
            ]
        self.ready = True
        return True

    async def _call_remote(self, matrix: NDArray) -> Any:
        """One predictor call for the rows of concurrent requests (see ``Batcher``)."""
        assert isinstance(self.predictor, RemotePredictor)
        x = ModelInput(matrix=matrix, datatype=self.datatype)
        return await self.predictor.call(x, {})

    def _join_keys(self) -> set[str]:
        assert self.source is not None
        from tureen.feature_refs import resolve

        if isinstance(self.source, LocalFeatures) or self.source.store is not None:
            store = self.source.store
            assert store is not None
            return set(resolve(store.snapshot(), self.config.feature_service).join_keys)
        return {f.name for f in self.source.needed}

    def _model_fields(self) -> list[Field]:
        assert self.source is not None
        fields = list(self.source.fields)
        if self.config.include_request_fields:
            fields += self._request_fields
        return fields

    def _build_source(self) -> LocalFeatures | RemoteFeatures:
        c = self.config
        store = self.store
        if c.features.repo is not None:
            store = FeatureStore(Path(c.features.repo))
        if c.features.source == "local":
            if store is None:
                raise ConfigError(
                    f"transformer {c.name!r} reads features in process but has no feature "
                    "repo; serve it from a repo (tureen serve --repo) or set features.repo."
                )
            return LocalFeatures(store, c.feature_service, c.name)
        assert c.features.url is not None
        return RemoteFeatures(
            c.features.url, c.feature_service, store, timeout=c.timeout_seconds,
            retries=c.retries, backoff=c.backoff_seconds, max_connections=c.max_connections,
            tls=c.features.tls)

    def _build_predictor(self) -> InProcessPredictor | RemotePredictor:
        c, p = self.config, self.config.predictor
        if p.host:
            host, protocol = p.host, p.protocol
            opts: dict[str, Any] = {"timeout": c.timeout_seconds, "retries": c.retries,
                                    "backoff": c.backoff_seconds, "tls": p.tls}
            if protocol != "grpc-v2":
                opts.update(max_connections=c.max_connections, binary=p.binary_tensors)
            deadline = (c.timeout_seconds * (c.retries + 1)
                        + c.backoff_seconds * (2 ** (c.retries + 1)))

            def make_client() -> PredictorClient:
                return predictor_client(host, protocol, **opts)

            return RemotePredictor(make_client, protocol, p.model or c.name,
                                   input_name=p.input_name, deadline=deadline)
        model: Model
        if p.model_dir:
            from tureen.serving.runtimes import model_from_dir, read_settings

            d = Path(p.model_dir)
            model = model_from_dir(p.model or c.name, d.name, d, read_settings(d.parent, d))
        elif p.model and self.resolve_model is not None:
            model = self.resolve_model(p.model)
        else:
            raise ConfigError(
                f"transformer {c.name!r} has no predictor: set predictor.host (remote), "
                "predictor.model_dir, or predictor.model (a model of this server)."
            )
        if not model.ready:
            model.load()
            from tureen.serving.runtimes import apply_declared

            apply_declared(model)
        return InProcessPredictor(model)

    def _adopt_signature(self) -> None:
        """Use the predictor's declared input datatype/name and outputs when it has them."""
        pred = self.predictor
        if pred is None:
            return
        if isinstance(pred, RemotePredictor) and not pred.inputs:
            answered = describe_remote(pred, self.config.predictor.host or "",
                                       self.config.predictor.protocol, self.config.predictor.tls)
            # refused for want of credentials: the next request's own may read it
            self._described_at = time.monotonic() if answered else 0.0
        ins = pred.inputs
        if len(ins) == 1 and ins[0].datatype in OIP_NUMPY and not self._declared_type:
            if ins[0].datatype != "BYTES":
                self.datatype = ins[0].datatype
            if not self.config.predictor.input_name:
                pred.input_name = ins[0].name
        if pred.outputs:
            self.outputs = list(pred.outputs)

    async def _maybe_describe(self) -> None:
        pred = self.predictor
        if (not isinstance(pred, RemotePredictor) or pred.protocol == "v1" or pred.inputs
                or self._declared_type):
            return
        if time.monotonic() - self._described_at < _DESCRIBE_EVERY_S:
            return
        self._described_at = time.monotonic()
        await asyncio.to_thread(self._adopt_signature)

    def unload(self) -> None:
        if isinstance(self.predictor, InProcessPredictor):
            self.predictor.model.unload()

    async def aclose(self) -> None:
        """Close pooled connections to remote feature servers and predictors."""
        if self.source is not None:
            await self.source.close()
        if isinstance(self.predictor, RemotePredictor):
            await self.predictor.close()

    # ---- request steps (shared by the sync and async paths) -----------------------------
    def _keys(self, payload: Any, scripted: bool = False) -> tuple[Columns, int]:
        assert self.source is not None
        if scripted:  # a before_features script returned columns
            if not isinstance(payload, dict):
                raise InvalidRequestError(
                    f"transformer script {self.config.script and self.config.script.path} "
                    f"preprocess must return columns (a dict of lists), got "
                    f"{type(payload).__name__}."
                )
            return from_columns(payload, self.source.needed, self.config.entity_keys)
        return extract(payload, self.source.needed, self.config.entity_keys)

    def _model_input(self, table: FeatureTable, keys: Columns) -> tuple[ModelInput, list[str]]:
        c = self.config
        join_cols = {k: v for k, v in keys.items() if k not in self._request_names}
        values: list[Sequence[Any]] = apply_policy(
            table, join_cols, c.missing.policy, c.missing.defaults)
        fields = table.fields
        if c.include_request_fields and self._request_fields:
            values = [*values, *(keys[f.name] for f in self._request_fields)]
            fields = [*fields, *self._request_fields]
        names = [f.name for f in fields]
        if c.input_format == "tensor":
            return ModelInput(matrix=as_matrix(values, self.datatype, table.n), names=names,
                              datatype=self.datatype), names
        return ModelInput(columns=as_columns(values, fields), names=names), names

    def _after_features_input(self, out: Any, names: list[str]) -> ModelInput:
        if isinstance(out, ModelInput):
            return out
        if isinstance(out, pd.DataFrame):
            if self.config.input_format == "columns":
                return ModelInput(columns=[(str(k), out[k].to_numpy()) for k in out.columns])
            return ModelInput(matrix=out.to_numpy(dtype=OIP_NUMPY[self.datatype]),
                              names=[str(k) for k in out.columns])
        arr = np.asarray(out)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        return ModelInput(matrix=arr.astype(OIP_NUMPY[self.datatype], copy=False), names=names)

    @staticmethod
    def _frame(x: ModelInput, names: list[str]) -> pd.DataFrame:
        if x.matrix is not None:
            return pd.DataFrame(x.matrix, columns=names)
        return pd.DataFrame(dict(x.columns or []))

    def _result(self, result: Any) -> Any:
        if isinstance(result, InferResponse):
            result.model_name = self.name
        return result

    @staticmethod
    def _predictions(result: Any) -> Any:
        """What a user postprocess sees: the predictions as an array (or dict of arrays)."""
        if isinstance(result, InferResponse):
            if len(result.outputs) == 1:
                return result.outputs[0].data
            return {o.name: o.data for o in result.outputs}
        if isinstance(result, dict) and "predictions" in result:
            return np.asarray(result["predictions"])
        return result

    # ---- async path -------------------------------------------------------------------
    async def predict(self, payload: Any, headers: Headers | None = None) -> Any:
        result, _ = await self.predict_with_input(payload, headers)
        return result

    async def predict_with_input(
        self, payload: Any, headers: Headers | None = None
    ) -> tuple[Any, ModelInput | None]:
        """The answer and the exact model input it was computed from (after features,
        request-time fields and any script), e.g. for the inference log."""
        assert self.source is not None and self.predictor is not None
        h = headers or {}
        await self._maybe_describe()  # before the input is built: it may set its datatype
        script = self.script
        if script is not None and script.position == "before_features":
            cols, _ = request_columns(payload)
            keys, _ = self._keys(await script.run_pre(cols), scripted=True)
        else:
            keys, _ = self._keys(payload)
        table = await self.source.fetch(keys)
        x, names = self._model_input(table, keys)
        if script is not None and script.position == "after_features":
            x = self._after_features_input(await script.run_pre(self._frame(x, names)), names)
        if isinstance(self.predictor, InProcessPredictor) and not self.predictor.is_async:
            result = await asyncio.to_thread(self.predictor.call_sync, x, h)
        elif (self._batcher is not None and x.matrix is not None and script is None
              and (self._service_token or "authorization" not in h)):
            # merged calls carry no one caller's credentials: a request that brings its own
            # (to be forwarded) is sent alone, unless this server speaks with a service token
            result = await self._batcher.submit(x.matrix)
        else:
            result = await self.predictor.call(x, h)
        if script is not None and script.post is not None:
            return await script.run_post(self._predictions(result)), x
        return self._result(result), x
