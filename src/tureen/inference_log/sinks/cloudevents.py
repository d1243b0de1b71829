"""HTTP sink speaking KServe's inference logger format: CloudEvents 1.0 in binary mode.

Each logged request becomes up to two events POSTed to ``url``, sharing ``ce-id`` (the
request id): ``org.kubeflow.serving.inference.request`` (the model's inputs, as an Open
Inference Protocol request body) and ``org.kubeflow.serving.inference.response`` (its
outputs, as an OIP response body), depending on the logging mode. The KServe extension
attributes ``ce-inferenceservicename``, ``ce-namespace``, ``ce-component`` and
``ce-endpoint`` are set, plus ``ce-modelname`` / ``ce-modelversion``, so receivers written
for KServe's logger (e.g. a Knative broker, a message dumper) accept them unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson

from tureen.inference_log.protocol import SinkWriteError
from tureen.inference_log.record import Columns, LoggedRequest, as_lists

log = logging.getLogger(__name__)

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"


def _datatype(values: list[Any]) -> str:
    v = next((x for x in values if x is not None), None)
    if isinstance(v, bool):
        return "BOOL"
    if isinstance(v, int):
        return "INT64"
    if isinstance(v, float):
        return "FP64"
    return "BYTES"


def _tensors(cols: Columns) -> list[dict[str, Any]]:
    return [{"name": k, "datatype": _datatype(v), "shape": [len(v)], "data": v}
            for k, v in as_lists(cols).items()]


def events(
    r: LoggedRequest, namespace: str = "default", component: str = "predictor",
    endpoint: str = "default", source: str | None = None,
) -> list[tuple[dict[str, str], bytes]]:
    """The (headers, body) of the CloudEvents for one logged request."""
    base = {
        "ce-specversion": "1.0",
        "ce-id": r.request_id,
        "ce-source": source or f"http://localhost/tureen/deployments/{r.deployment}",
        "ce-time": r.timestamp.isoformat().replace("+00:00", "Z"),
        "ce-inferenceservicename": r.deployment,
        "ce-namespace": namespace,
        "ce-component": component,
        "ce-endpoint": endpoint,
        "ce-modelname": r.model_name,
        "ce-modelversion": r.model_version,
        "content-type": "application/json",
    }
    out = []
    if r.features or not r.predictions:
        body: dict[str, Any] = {"id": r.request_id, "inputs": _tensors(r.features)}
        params: dict[str, Any] = {}
        if r.entities:
            params["entities"] = as_lists(r.entities)
        if r.request_fields:
            params["request_fields"] = as_lists(r.request_fields)
        if params:
            body["parameters"] = params
        out.append(({**base, "ce-type": REQUEST_TYPE}, orjson.dumps(body, default=str)))
    if r.predictions:
        resp = {"model_name": r.model_name, "model_version": r.model_version,
                "id": r.request_id, "outputs": _tensors(r.predictions)}
        out.append(({**base, "ce-type": RESPONSE_TYPE}, orjson.dumps(resp, default=str)))
    return out


class CloudEventsSink:
    def __init__(
        self,
        url: str,
        namespace: str = "default",
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        concurrency: int = 8,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.retries = retries
        self.sent = 0
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._client = httpx.Client(timeout=timeout, headers=dict(headers or {}), limits=limits)
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="tureen-cloudevents")

    def write(self, batch: Sequence[LoggedRequest]) -> None:
        """POST every event of the batch, ``concurrency`` at a time."""
        posts = [(i, e) for i, r in enumerate(batch) for e in events(r, self.namespace)]
        results = list(self._pool.map(lambda p: self._post(*p[1]), posts))
        self.sent += sum(results)
        failed = len({i for (i, _), ok in zip(posts, results, strict=True) if not ok})
        if failed:  # records with at least one undelivered event
            raise SinkWriteError(
                f"{failed} inference log events could not be delivered to {self.url}.", failed
            )

    def _post(self, headers: dict[str, str], body: bytes) -> bool:
        for attempt in range(self.retries + 1):
            try:
                resp = self._client.post(self.url, content=body, headers=headers)
                if resp.status_code < 300:
                    return True
                if resp.status_code < 500:
                    log.error("inference log: %s rejected an event: HTTP %s",
                              self.url, resp.status_code)
                    return False
            except httpx.HTTPError as exc:
                if attempt == self.retries:
                    log.error("inference log: cannot reach %s: %s", self.url, exc)
        return False

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()
