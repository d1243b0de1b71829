"""A Kubernetes API server that knows one resource: KServe InferenceServices.

It speaks the parts of the API the official ``kubernetes`` client uses for custom objects
(GET / POST / PUT, optimistic concurrency on ``metadata.resourceVersion``, 404 / 409 as
``Status`` objects) and plays the KServe controller: after ``ready_after`` reads of a new
generation it sets ``status.url``, ``observedGeneration`` and the ``Ready`` condition. There
is no cluster on this machine; the gate's client code is exercised against this instead.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PATH = re.compile(r"^/apis/serving\.kserve\.io/v1beta1/namespaces/([^/]+)/inferenceservices"
                  r"(?:/([^/?]+))?$")


class KubeAPI:
    def __init__(self, ready_after: int = 2, domain: str = "example.com") -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, Any] | None]] = []
        self.ready_after = ready_after
        self.never_ready = False
        self.domain = domain
        self._reads: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._version = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict[str, Any]:
                n = int(self.headers.get("Content-Length") or 0)
                out: dict[str, Any] = json.loads(self.rfile.read(n) or b"{}")
                return out

            def _route(self, method: str) -> None:
                m = PATH.match(self.path.split("?")[0])
                body = self._body() if method in ("POST", "PUT") else None
                api.requests.append((method, self.path, body))
                if m is None:
                    self._send(404, _status(404, "NotFound", f"no route {self.path}"))
                    return
                code, out = api.handle(method, m.group(1), m.group(2), body)
                self._send(code, out)

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_PUT(self) -> None:
                self._route("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> KubeAPI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def kubeconfig(self) -> str:
        return json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.url}}],
            "users": [{"name": "test", "user": {}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        })

    def handle(self, method: str, ns: str, name: str | None, body: dict[str, Any] | None
               ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if method == "POST":
                assert body is not None
                key = (ns, body["metadata"]["name"])
                if key in self.objects:
                    return 409, _status(409, "AlreadyExists", f"{key[1]} already exists")
                return 201, self._store(key, body, generation=1)
            key = (ns, name or "")
            if key not in self.objects:
                return 404, _status(404, "NotFound",
                                    f'inferenceservices.serving.kserve.io "{name}" not found')
            current = self.objects[key]
            if method == "PUT":
                assert body is not None
                if body["metadata"].get("resourceVersion") != \
                        current["metadata"]["resourceVersion"]:
                    return 409, _status(409, "Conflict", "the object has been modified")
                return 200, self._store(key, body,
                                        generation=current["metadata"]["generation"] + 1)
            self._reads[key] = self._reads.get(key, 0) + 1
            if self._reads[key] >= self.ready_after and not self.never_ready:
                gen = current["metadata"]["generation"]
                current["status"] = {
                    "url": f"http://{key[1]}.{key[0]}.{self.domain}",
                    "observedGeneration": gen,
                    "conditions": [{"type": "Ready", "status": "True"}]}
            return 200, current

    def _store(self, key: tuple[str, str], body: dict[str, Any], generation: int
               ) -> dict[str, Any]:
        self._version += 1
        obj = json.loads(json.dumps(body))
        obj["metadata"].update(resourceVersion=str(self._version), generation=generation,
                               namespace=key[0])
        obj["status"] = {"conditions": [{"type": "Ready", "status": "False",
                                         "reason": "RevisionMissing",
                                         "message": "waiting for the predictor"}]}
        self.objects[key] = obj
        self._reads[key] = 0
        return obj


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
            "reason": reason, "code": code}
