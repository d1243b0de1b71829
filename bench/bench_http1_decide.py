"""The HTTP/1.1 decision (issue 11): tureen's own HTTP/1.1 server vs uvicorn (httptools)
running the same ``RestApp``, on real workloads, in one run.

One ``ModelServer`` process per implementation (one worker, gRPC off) serves a scikit-learn
LogisticRegression (10 Float32 features) and the Feast routes of a SQLite feature repo. wrk
(1 thread, 16 connections) drives, per round and in alternating order: KServe v1
``:predict``, OIP v2 ``/infer`` (JSON) and Feast ``/get-online-features`` (10 features, one
random entity per request). Server CPU per request comes from /proc. Prints JSON: medians of
``--runs`` rounds, own/uvicorn ratios, and the load average before and after.

    python bench/bench_http1_decide.py [--duration 5] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_feature_server import lua_for_features, tureen_repo
from bench_feature_server import wrk as wrk_lua
from bench_model_server import ROW, build_repository, free_port, median_of, ratio, wait_http

POST = 'wrk.method = "POST"\nwrk.body = {body}\nwrk.headers["Content-Type"] = "application/json"\n'
V2 = {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 10], "data": ROW}]}


def serve(port: int, models: str, repo: str, http_server: str) -> None:
    from tureen.serving import ModelServer
    from tureen.store import FeatureStore
    from tureen.transports.rest.feast import feature_routes

    store = FeatureStore(repo)
    ModelServer(port, 0, host="127.0.0.1", model_repository=models, enable_grpc=False,
                http_server=http_server, extra_routes=feature_routes(store)).start()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(pid: int, url: str, lua: str, seconds: float, tmp: Path) -> dict[str, float]:
    before = cpu_seconds(pid)
    out = wrk_lua(url, lua, 16, seconds, tmp)
    used = cpu_seconds(pid) - before
    n = out["rps"] * seconds
    out["server_cpu_us_per_req"] = round(used / n * 1e6, 1) if n else float("nan")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1], args.serve[2], args.serve[3])
        return
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install -y wrk")
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="tureen-bench-http1-decide-"))
    build_repository(tmp / "models")
    repo = tureen_repo(tmp)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    workloads = {
        "v1": ("/v1/models/lr:predict", POST.format(body=json.dumps(json.dumps(
            {"instances": [ROW]})))),
        "v2": ("/v2/models/lr/infer", POST.format(body=json.dumps(json.dumps(V2)))),
        "feast": ("/get-online-features", lua_for_features()),
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    ports: dict[str, int] = {}
    try:
        for impl in ("tureen", "uvicorn"):
            ports[impl] = free_port()
            procs[impl] = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--serve", str(ports[impl]),
                 str(tmp / "models"), str(repo), impl], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for port in ports.values():
            wait_http(f"http://127.0.0.1:{port}/v2/health/ready")
        runs: dict[str, list[dict[str, float]]] = {
            f"{w}_{impl}": [] for w in workloads for impl in ports}
        for port in ports.values():  # warm-up
            for path, lua in workloads.values():
                wrk_lua(f"http://127.0.0.1:{port}{path}", lua, 16, 1, tmp)
        for r in range(args.runs):
            order = list(ports) if r % 2 == 0 else list(reversed(ports))
            for w, (path, lua) in workloads.items():
                for impl in order:
                    runs[f"{w}_{impl}"].append(measure(
                        procs[impl].pid, f"http://127.0.0.1:{ports[impl]}{path}", lua,
                        args.duration, tmp))
        med = {name: median_of(rs) for name, rs in runs.items()}
        result: dict[str, Any] = {
            "workload": {"connections": 16, "workers": 1, "duration_s": args.duration,
                         "runs": args.runs, "cpus": os.cpu_count(),
                         "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
            "median": med,
            "own_vs_uvicorn_rps": {w: ratio(med[f"{w}_tureen"]["rps"],
                                            med[f"{w}_uvicorn"]["rps"]) for w in workloads},
            "uvicorn_vs_own_cpu_per_req": {
                w: ratio(med[f"{w}_uvicorn"]["server_cpu_us_per_req"],
                         med[f"{w}_tureen"]["server_cpu_us_per_req"]) for w in workloads},
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
