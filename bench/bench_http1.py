"""HTTP/1.1 server benchmark: tureen's own server vs uvicorn, in one run.

wrk (1 thread, 16 connections, POST) against:
  (i)   bare Starlette on uvicorn (httptools, uvloop) returning a canned JSON response;
  (ii)  the same canned response as a native handler on ``tureen.transports.http1``;
  (iii) ``ModelServer`` v1 predict on a scikit-learn LogisticRegression (10 features), once
        with ``http_server="uvicorn"`` and once ``"tureen"``.
Each server runs in its own process; besides throughput and latency we read its CPU time
from /proc around each wrk run (server CPU µs per request: robust on a shared machine).
Prints JSON: medians over ``--runs`` rounds and ratios against uvicorn measured in this run.

    python bench/bench_http1.py [--duration 5] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_model_server import (
    ROW,
    build_repository,
    free_port,
    median_of,
    ratio,
    wait_http,
    wrk,
)

CANNED = b'{"predictions":[0.6224593312018546]}'
PATH = "/v1/models/canned:predict"


def serve_starlette(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def canned(request: Request) -> Response:
        await request.body()
        return Response(CANNED, media_type="application/json")

    async def ready(request: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    app = Starlette(routes=[Route(PATH, canned, methods=["POST"]), Route("/ready", ready)])
    uvicorn.run(app, host="127.0.0.1", port=port, http="httptools", loop="uvloop",
                access_log=False, log_level="warning")


def serve_native(port: int) -> None:
    import uvloop

    from tureen.transports.http1 import HTTPServer, NativeHandler, Reply

    async def canned(headers: dict[str, str], body: bytes) -> Reply:
        return 200, CANNED, b"application/json", []

    class Canned:
        def resolve(self, method: str, path: str, query: bytes = b"") -> NativeHandler | None:
            return canned if path in (PATH, "/ready") else None

    async def main() -> None:
        server = HTTPServer(None, Canned())
        await server.start(host="127.0.0.1", port=port)
        await asyncio.Event().wait()

    uvloop.run(main())


def serve_model(port: int, repo: str, http_server: str) -> None:
    from tureen.serving import ModelServer

    ModelServer(port, 0, host="127.0.0.1", model_repository=repo, enable_grpc=False,
                http_server=http_server).start()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(proc: subprocess.Popen[bytes], url: str, body: str, seconds: float,
            lua_dir: Path) -> dict[str, float]:
    before = cpu_seconds(proc.pid)
    out = wrk(url, body, 16, seconds, lua_dir)
    used = cpu_seconds(proc.pid) - before
    n = out["requests_per_s"] * seconds
    out["server_cpu_us_per_req"] = round(used / n * 1e6, 1) if n else float("nan")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--serve", nargs="+", help=argparse.SUPPRESS)  # child process mode
    args = ap.parse_args()
    if args.serve:
        kind, port = args.serve[0], int(args.serve[1])
        if kind == "starlette":
            serve_starlette(port)
        elif kind == "native":
            serve_native(port)
        else:
            serve_model(port, args.serve[2], args.serve[3])
        return
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="tureen-bench-http1-"))
    build_repository(tmp / "models")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    me = [sys.executable, str(Path(__file__).resolve()), "--serve"]
    servers: dict[str, tuple[list[str], str, str]] = {}
    for name, cmd in (("starlette_uvicorn_canned", ["starlette"]),
                      ("tureen_native_canned", ["native"])):
        port = free_port()
        servers[name] = ([*me, cmd[0], str(port)], f"http://127.0.0.1:{port}{PATH}",
                         f"http://127.0.0.1:{port}/ready")
    for hs in ("uvicorn", "tureen"):
        port = free_port()
        servers[f"sklearn_v1_{hs}"] = (
            [*me, "model", str(port), str(tmp / "models"), hs],
            f"http://127.0.0.1:{port}/v1/models/lr:predict",
            f"http://127.0.0.1:{port}/v2/health/ready")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    body = json.dumps({"instances": [ROW]})
    try:
        for name, (cmd, _, _) in servers.items():
            procs[name] = subprocess.Popen(cmd, env=env)
        for _, _, ready in servers.values():
            wait_http(ready)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        for _, url, _ in servers.values():  # warm-up
            wrk(url, body, 16, 1, tmp)
        for _ in range(args.runs):
            for name, (_, url, _) in servers.items():
                runs[name].append(measure(procs[name], url, body, args.duration, tmp))
        med = {name: median_of(r) for name, r in runs.items()}
        result: dict[str, Any] = {
            "workload": {"connections": 16, "duration_s": args.duration, "runs": args.runs,
                         "cpus": os.cpu_count()},
            "median": med,
            "ratios": {
                "canned_native_vs_starlette_uvicorn_rps": ratio(
                    med["tureen_native_canned"]["requests_per_s"],
                    med["starlette_uvicorn_canned"]["requests_per_s"]),
                "canned_cpu_per_req_starlette_uvicorn_vs_native": ratio(
                    med["starlette_uvicorn_canned"]["server_cpu_us_per_req"],
                    med["tureen_native_canned"]["server_cpu_us_per_req"]),
                "sklearn_v1_tureen_vs_uvicorn_rps": ratio(
                    med["sklearn_v1_tureen"]["requests_per_s"],
                    med["sklearn_v1_uvicorn"]["requests_per_s"]),
                "sklearn_v1_cpu_per_req_uvicorn_vs_tureen": ratio(
                    med["sklearn_v1_uvicorn"]["server_cpu_us_per_req"],
                    med["sklearn_v1_tureen"]["server_cpu_us_per_req"]),
            },
        }
        print(json.dumps(result, indent=2))
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
