"""``PooledHTTPPredictorClient``: the ``PredictorClient`` protocol (KServe v1 and OIP REST)
on ``HttpPool``, with the same retry policy and error mapping as
``tureen.serving.clients.HTTPPredictorClient`` (whose wire encoding it reuses)."""

from __future__ import annotations

from typing import Any

import orjson

from tureen.serving.clients import _raise_remote, _RetryError, with_retries
from tureen.serving.inference import InferRequest, InferResponse
from tureen.transformer.http_pool import HttpPool, PoolConnectError, PoolResponse, PoolTimeoutError

_RETRY_STATUS = {502, 503, 504}
_FORWARD = ("x-request-id", "traceparent", "authorization")


def _forward(headers: dict[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (headers or {}).items() if k in _FORWARD}


async def post_with_retries(pool: HttpPool, path: str, body: bytes, headers: dict[str, str],
                            retries: int, backoff: float) -> PoolResponse:
    """POST, retrying connection errors, timeouts and 502/503/504 with exponential backoff."""
    async def call() -> PoolResponse:
        try:
            resp = await pool.request("POST", path, body, headers)
        except (PoolConnectError, PoolTimeoutError) as exc:
            raise _RetryError(str(exc)) from None
        if resp.status in _RETRY_STATUS:
            raise _RetryError(f"HTTP {resp.status}")
        return resp

    where = f"POST http://{pool.host}:{pool.port}{pool.prefix}{path}"
    return await with_retries(call, where, retries, backoff)


class PooledHTTPPredictorClient:
    def __init__(self, base_url: str, protocol: str = "v1", timeout: float = 30.0,
                 retries: int = 3, backoff: float = 0.05, binary: bool = False,
                 max_connections: int = 100) -> None:
        self.protocol = protocol
        self.pool = HttpPool(base_url, max_connections, timeout)
        self.retries, self.backoff, self.binary = retries, backoff, binary

    async def _post(self, path: str, body: bytes, headers: dict[str, str]) -> PoolResponse:
        resp = await post_with_retries(self.pool, path, body, headers, self.retries,
                                       self.backoff)
        if resp.status >= 400:
            _raise_remote(resp.status, resp.content,
                          f"http://{self.pool.host}:{self.pool.port}{path}")
        return resp

    async def predict_v1(self, model: str, body: Any, headers: dict[str, str] | None = None
                         ) -> Any:
        h = {"content-type": "application/json", **_forward(headers)}
        resp = await self._post(f"/v1/models/{model}:predict",
                                orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), h)
        return orjson.loads(resp.content)

    async def infer(self, request: InferRequest, headers: dict[str, str] | None = None
                    ) -> InferResponse:
        from tureen.transports.rest.oip import decode_response, encode_request

        body, head_len = encode_request(request, binary=self.binary)
        h = {"content-type": "application/json", **_forward(headers)}
        if head_len is not None:
            h["inference-header-content-length"] = str(head_len)
            h["content-type"] = "application/octet-stream"
        path = f"/v2/models/{request.model_name}"
        if request.model_version:
            path += f"/versions/{request.model_version}"
        resp = await self._post(path + "/infer", body, h)
        return decode_response(resp.content, resp.headers.get("inference-header-content-length"))

    async def close(self) -> None:
        await self.pool.close()
