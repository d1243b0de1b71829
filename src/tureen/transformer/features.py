"""Where a transformer's features come from: the in-process store or a remote feature server.

Both return a ``FeatureTable``: the service's features in registry order with their dtypes,
values per feature (None where missing) and, on demand, Feast statuses per value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import orjson

from tureen.definitions import Field
from tureen.errors import (
    BackendUnavailableError,
    ConfigError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    TureenError,
    UnauthenticatedError,
)
from tureen.feature_refs import resolve
from tureen.online.response import OnlineResponse
from tureen.serving.clients import (
    SERVICE_TOKEN_ENV,
    client_ssl,
    forward_headers,
    post_httpx,
    post_with_retries,
    service_token,
)
from tureen.serving.context import current
from tureen.serving.http_pool import HttpPool, PoolResponse
from tureen.store import FeatureStore
from tureen.transformer.errors import classify
from tureen.transformer.store_watch import StoreWatch
from tureen.types import UnixTimestamp, dtype_from_name

Columns = dict[str, list[Any]]
_OIP_DTYPE = {"INT32": "Int32", "INT64": "Int64", "FP32": "Float32", "FP64": "Float64",
              "BOOL": "Bool", "BYTES": "String"}


@dataclass
class FeatureTable:
    fields: list[Field]
    values: list[Sequence[Any]]
    stored: list[bool]  # False for on-demand features (computed, never NOT_FOUND)
    status_of: Callable[[], list[list[str]]]
    n: int


def table_from_response(resp: OnlineResponse, stored: list[bool]) -> FeatureTable:
    d = resp.to_dict()
    fields = resp.fields[len(resp.join_keys):]

    def statuses() -> list[list[str]]:
        s = resp.statuses
        return [[str(x) for x in s[f.name]] for f in fields]

    return FeatureTable(fields, [d[f.name] for f in fields], stored, statuses, len(resp))


def registry_schema(store: FeatureStore, service: str
                    ) -> tuple[list[Field], list[bool], list[Field]]:
    """(output fields in order, stored-or-on-demand per field, join keys + request fields)."""
    plan = resolve(store.snapshot(), service)
    return (plan.output_fields, [not r.on_demand for r in plan.refs],
            plan.key_fields + list(plan.request_fields))


class FeatureSource(Protocol):
    fields: list[Field]
    stored: list[bool]
    needed: list[Field]  # join keys and request fields the service needs

    def load(self) -> None: ...

    async def fetch(self, columns: Columns) -> FeatureTable: ...

    async def close(self) -> None: ...


class LocalFeatures:
    """Reads the repo's online store in process (no network hop)."""

    def __init__(self, store: FeatureStore, service: str, name: str | None = None) -> None:
        self.store = store
        self.service = service
        self.fields: list[Field] = []
        self.stored: list[bool] = []
        self.needed: list[Field] = []
        #: warns when the online store lost the service's data (scored as missing)
        self.watch = StoreWatch(store, service, name or service)

    def load(self) -> None:
        self.fields, self.stored, self.needed = registry_schema(self.store, self.service)

    def fetch_sync(self, columns: Columns) -> FeatureTable:
        self.watch.poke()
        resp = self.store.get_online_features(feature_service=self.service, entity_rows=columns)
        return table_from_response(resp, self.stored)

    async def fetch(self, columns: Columns) -> FeatureTable:
        self.watch.poke()
        # part of the caller's predict (authorized for the model), not a feature read of
        # its own: straight to the online retrieval, past the facade's read_features check
        resp = await self.store.online_retrieval.get_online_features_async(
            self.service, columns, False)
        return table_from_response(resp, self.stored)

    async def close(self) -> None:
        return None


class RemoteFeatures:
    """Calls ``POST {url}/get-online-features`` (tureen's or Feast's feature server)."""

    def __init__(
        self, url: str, service: str, store: FeatureStore | None, *, timeout: float,
        retries: int, backoff: float, max_connections: int, tls: Any = None,
    ) -> None:
        scheme = "https://" if tls is not None else "http://"
        self.url = url.rstrip("/") if "://" in url else scheme + url.rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(
                f"features.url {url!r}: use an http:// or https:// URL of the feature server."
            )
        self._ssl = client_ssl(tls) if self.url.startswith("https://") else None
        self._http: httpx.AsyncClient | None = None
        self.service_token = service_token()
        self.service = service
        self.store = store
        self.retries, self.backoff = retries, backoff
        self.fields: list[Field] = []
        self.stored: list[bool] = []
        self.needed: list[Field] = []
        self._timeout = timeout
        self._max_connections = max_connections
        self._pool: HttpPool | None = None

    def load(self) -> None:
        if self.store is not None:
            self.fields, self.stored, self.needed = registry_schema(self.store, self.service)
            return
        # No local registry: read the typed schema the tureen feature server publishes.
        try:
            r = httpx.get(f"{self.url}/v2/models/{self.service}", timeout=self._timeout,
                          verify=self._ssl or True,
                          headers=forward_headers(None, self.service_token))
        except httpx.HTTPError as exc:
            raise BackendUnavailableError(
                f"cannot read the schema of feature service {self.service!r} from {self.url} "
                f"({exc}); start the feature server or give the transformer a repo."
            ) from None
        if r.status_code != 200:
            raise NotFoundError(
                f"{self.url} does not publish feature service {self.service!r} "
                f"(HTTP {r.status_code}); give the transformer the feature repo instead."
            )
        md = r.json()
        self.fields = [Field(o["name"], dtype_from_name(_OIP_DTYPE[o["datatype"]]))
                       for o in md["outputs"]]
        self.stored = [True] * len(self.fields)
        self.needed = [Field(i["name"], dtype_from_name(_OIP_DTYPE[i["datatype"]]))
                       for i in md["inputs"]]

    def _client(self) -> HttpPool:
        if self._pool is None:  # created in the serving loop, on first use
            self._pool = HttpPool(self.url, self._max_connections, self._timeout)
        return self._pool

    async def fetch(self, columns: Columns) -> FeatureTable:
        body = orjson.dumps({"feature_service": self.service, "entities": columns})
        ctx = current()
        headers = {"content-type": "application/json",
                   **forward_headers(ctx.headers if ctx is not None else None, self.service_token)}
        try:
            if self.url.startswith("https://"):
                resp = await self._post_tls(body, headers)
            else:
                resp = await post_with_retries(self._client(), "/get-online-features", body,
                                               headers, self.retries, self.backoff,
                                               "feature server")
        except BackendUnavailableError as exc:
            raise classify(exc) from None
        if resp.status in (401, 403):
            what = "are not valid there" if resp.status == 401 else "may not read features"
            err = UnauthenticatedError if resp.status == 401 else PermissionDeniedError
            raise err(f"the feature server refused the request ({resp.status}): the "
                      f"credentials forwarded {what}; give this server a service token "
                      f"({SERVICE_TOKEN_ENV}) with the reader role.")
        if resp.status != 200:
            detail = _detail(resp.content)
            msg = (f"feature server {self.url}/get-online-features answered HTTP "
                   f"{resp.status}: {detail}")
            if resp.status == 404:
                raise NotFoundError(msg)
            if resp.status < 500:
                raise InvalidRequestError(msg)
            raise TureenError(msg)
        return self._table(orjson.loads(resp.content))

    def _table(self, doc: dict[str, Any]) -> FeatureTable:
        names: list[str] = doc["metadata"]["feature_names"]
        results: list[dict[str, Any]] = doc["results"]
        index = {n: i for i, n in enumerate(names)}
        values: list[Sequence[Any]] = []
        picked: list[dict[str, Any]] = []
        for f in self.fields:
            i = index.get(f.name)
            if i is None:
                raise TureenError(
                    f"the feature server at {self.url} did not return feature {f.name!r} of "
                    f"service {self.service!r}; it returned {names}. Are both on the same "
                    "registry version?"
                )
            picked.append(results[i])
            col = results[i]["values"]
            if f.dtype is UnixTimestamp:  # Feast's JSON: epoch seconds; the store: datetimes
                col = [_from_epoch(v) for v in col]
            values.append(col)
        n = len(values[0]) if values else 0

        def statuses() -> list[list[str]]:
            return [r.get("statuses") or ["PRESENT"] * n for r in picked]

        return FeatureTable(self.fields, values, self.stored, statuses, n)

    async def _post_tls(self, body: bytes, headers: dict[str, str]) -> PoolResponse:
        if self._http is None:  # created in the serving loop, on first use
            self._http = httpx.AsyncClient(
                base_url=self.url, timeout=self._timeout, verify=self._ssl or True,
                limits=httpx.Limits(max_connections=self._max_connections,
                                    max_keepalive_connections=self._max_connections))
        return await post_httpx(self._http, "/get-online-features", body, headers,
                                self.retries, self.backoff, "feature server")

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        if self._http is not None:
            await self._http.aclose()


def _from_epoch(v: Any) -> Any:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return datetime.fromtimestamp(v, UTC)
    return v


def _detail(content: bytes) -> str:
    try:
        obj = orjson.loads(content)
    except orjson.JSONDecodeError:
        return content[:200].decode(errors="replace")
    if isinstance(obj, str):  # Feast's error body: the JSON text of {module, class, message}
        try:
            inner = orjson.loads(obj)
        except orjson.JSONDecodeError:
            return obj
        if isinstance(inner, dict) and "message" in inner:
            return str(inner["message"])
        return obj
    if isinstance(obj, dict):
        return str(obj.get("error") or obj.get("detail") or obj)
    return str(obj)
