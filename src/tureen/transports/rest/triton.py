"""Triton's REST extensions, mounted in the REST app as a ``RouteTable`` (so every request
runs through the same guard chain as the app's own routes):

    GET  /v2/models[/{name}[/versions/{v}]]/stats          statistics
    GET  /v2/models/{name}[/versions/{v}]/config           model configuration
    GET  /v2/systemsharedmemory[/region/{r}]/status        system shared memory
    POST /v2/systemsharedmemory/region/{r}/register
    POST /v2/systemsharedmemory[/region/{r}]/unregister
    GET  /v2/cudasharedmemory[/region/{r}]/status          CUDA: nothing is ever registered
    POST /v2/cudasharedmemory/region/{r}/register          CUDA: refused (no GPU support)
    POST /v2/cudasharedmemory[/region/{r}]/unregister

Triton's logging and trace settings (``/v2/logging``, ``.../trace/setting``) answer 404 with
the list of what this server offers.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from tureen.codecs.oip_json import loads
from tureen.errors import InvalidRequestError, NotFoundError
from tureen.serving.dataplane import DataPlane
from tureen.serving.shared_memory import CUDA_UNSUPPORTED
from tureen.transports.http1.native import Headers, Reply

Handler = Callable[[Headers, bytes | bytearray], Awaitable[Reply]]
_TAILS = ("/stats", "/config", "/status", "/register", "/unregister", "/setting", "/logging")
_MAX_CONTROL_BODY = 64 * 1024


def _json(status: int, obj: Any) -> Reply:
    return status, orjson.dumps(obj), b"application/json", []


def _body(body: bytes | bytearray) -> Any:
    if len(body) > _MAX_CONTROL_BODY:
        raise InvalidRequestError(f"the request body is over {_MAX_CONTROL_BODY} bytes; a "
                                  "shared memory or settings request is a small JSON object.")
    return loads(body) if body.strip() else {}


class TritonRoutes:
    error_detail = False
    #: every route served, "METHOD /path/{param}" (``RestApp.operations``)
    OPERATIONS = (
        "GET /v2/models/stats",
        "GET /v2/models/{name}/stats",
        "GET /v2/models/{name}/versions/{version}/stats",
        "GET /v2/models/{name}/config",
        "GET /v2/models/{name}/versions/{version}/config",
        *(f"{op.split()[0]} /v2/{kind}{op.split()[1]}"
          for kind in ("systemsharedmemory", "cudasharedmemory")
          for op in ("GET /status", "GET /region/{region}/status",
                     "POST /region/{region}/register", "POST /region/{region}/unregister",
                     "POST /unregister")),
    )

    def __init__(self, dataplane: DataPlane) -> None:
        self.dp = dataplane

    def operations(self) -> list[str]:
        return list(self.OPERATIONS)

    def match(self, path: str) -> tuple[str, Handler] | None:
        if not path.startswith("/v2/") or not path.endswith(_TAILS):
            return None
        parts = path[4:].split("/")
        head, tail = parts[0], parts[-1]
        if head == "models":
            return self._models(parts[1:-1], tail)
        if head in ("systemsharedmemory", "cudasharedmemory"):
            return self._shm(head, parts[1:-1], tail)
        if head == "logging":
            return "GET", functools.partial(self._unserved, "logging")
        if tail == "setting":
            return "GET", functools.partial(self._unserved, "trace")
        return None

    def _models(self, middle: list[str], tail: str) -> tuple[str, Handler] | None:
        if tail == "setting":
            return "GET", functools.partial(self._unserved, "trace")
        name = version = ""
        if middle:
            name = middle[0]
            if len(middle) == 3 and middle[1] == "versions" and middle[2]:
                version = middle[2]
            elif len(middle) != 1 or not name:
                return None
        if tail == "stats":
            return "GET", functools.partial(self._stats, name, version)
        if tail == "config" and name:
            return "GET", functools.partial(self._config, name, version)
        return None

    def _shm(self, kind: str, middle: list[str], tail: str) -> tuple[str, Handler] | None:
        region = ""
        if middle:
            if len(middle) != 2 or middle[0] != "region" or not middle[1]:
                return None
            region = middle[1]
        cuda = kind == "cudasharedmemory"
        if tail == "status":
            return "GET", functools.partial(self._cuda_status if cuda else self._shm_status,
                                            region)
        if tail == "register" and region:
            return "POST", functools.partial(self._cuda_register if cuda else self._register,
                                             region)
        if tail == "unregister":
            return "POST", functools.partial(
                self._cuda_unregister if cuda else self._unregister, region)
        return None

    # statistics and configuration

    async def _stats(self, name: str, version: str, headers: Headers, body: Any) -> Reply:
        return _json(200, self.dp.statistics(name or None, version or None))

    async def _config(self, name: str, version: str, headers: Headers, body: Any) -> Reply:
        return _json(200, self.dp.model_config(name, version or None))

    # system shared memory

    async def _shm_status(self, region: str, headers: Headers, body: Any) -> Reply:
        return _json(200, self.dp.shared_memory_control().status(region or None))

    async def _register(self, region: str, headers: Headers, body: bytes | bytearray) -> Reply:
        control = self.dp.shared_memory_control()  # the caller first
        req = _body(body)
        if not isinstance(req, dict) or "key" not in req or "byte_size" not in req:
            raise InvalidRequestError(
                'a register request is {"key": "/name", "offset": 0, "byte_size": N}.')
        control.register(region, req["key"], req.get("offset", 0), req["byte_size"])
        return _json(200, {})

    async def _unregister(self, region: str, headers: Headers, body: Any) -> Reply:
        self.dp.shared_memory_control(not region).unregister(region or None)
        return _json(200, {})

    # CUDA shared memory: never registered here

    async def _cuda_status(self, region: str, headers: Headers, body: Any) -> Reply:
        self.dp.authorize_shared_memory()
        if region:
            raise NotFoundError(f"CUDA shared memory region {region!r} is not registered; this "
                                "server has no CUDA shared memory (use system shared memory).")
        return _json(200, [])

    async def _cuda_register(self, region: str, headers: Headers, body: Any) -> Reply:
        self.dp.authorize_shared_memory()
        raise InvalidRequestError(CUDA_UNSUPPORTED)

    async def _cuda_unregister(self, region: str, headers: Headers, body: Any) -> Reply:
        self.dp.authorize_shared_memory(not region)
        return await self._cuda_status(region, headers, body) if region else _json(200, {})

    async def _unserved(self, what: str, headers: Headers, body: Any) -> Reply:
        raise NotFoundError(
            f"{what} settings are not served by tureen; it serves the extensions "
            f"{', '.join(self.dp.server_metadata()['extensions'])} (see GET /v2).")

