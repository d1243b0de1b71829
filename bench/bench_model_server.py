"""Model server benchmark: tureen vs a bare Starlette handler, measured in the same run.

The gRPC points use a Python load generator on the same two cores, so they are bounded by
grpc.aio itself: ``bare_grpc_aio_c16`` (an empty ModelInfer handler) is that ceiling.

Workload: scikit-learn LogisticRegression over 10 Float32 features, one row per request, one
worker; wrk at 1 and 16 connections against 127.0.0.1 (v1 and OIP REST), a small async gRPC
client (bench/model_server_grpc_load.py) for gRPC, and a 1M-element FP32 tensor through the
binary extension. Prints JSON with medians over ``--runs`` and ratios against the bare
Starlette ceiling of this run and against KServe 0.21's numbers measured earlier on this
machine (quoted, KServe is not installed here).

    python bench/bench_model_server.py [--duration 5] [--runs 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression

HERE = Path(__file__).parent
KSERVE_REF: dict[str, Any] = {"v1_rps_c16": 1000.0, "v2_rps_c16": 840.0, "p99_ms_c16": (22.0, 34.0),
              "p50_ms_c1": (1.4, 1.5)}
ROW = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]

TRIVIAL = '''
import numpy as np
from tureen.serving import Model

W = np.arange(10, dtype=np.float32) / 10.0


class Trivial(Model):
    def load(self):
        self.ready = True
        return True

    def predict(self, payload, headers=None):
        return self.decode(payload) @ W
'''

TRIVIAL_ASYNC = TRIVIAL.replace("def predict", "async def predict").replace(
    "class Trivial", "class TrivialAsync")

ECHO = '''
from tureen.serving import InferResponse, InferOutput, Model


class Echo(Model):
    def load(self):
        self.ready = True
        return True

    async def predict(self, payload, headers=None):
        return InferResponse(self.name, [InferOutput("echo", i.datatype, i.shape, i.data)
                                         for i in payload.inputs])
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_repository(root: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 10)).astype(np.float32)
    y = (x @ np.arange(10) > 0).astype(np.int64)
    (root / "lr" / "1").mkdir(parents=True)
    joblib.dump(LogisticRegression().fit(x, y), root / "lr" / "1" / "model.joblib")
    for name, code in (("trivial", TRIVIAL), ("trivial_async", TRIVIAL_ASYNC), ("echo", ECHO)):
        (root / name / "1").mkdir(parents=True)
        (root / name / "1" / "model.py").write_text(code)


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server at {url} did not become ready")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str, body: str, conns: int, seconds: float, lua_dir: Path) -> dict[str, float]:
    lua = lua_dir / f"post{abs(hash(body))}.lua"
    lua.write_text('wrk.method = "POST"\nwrk.body = ' + json.dumps(body) +
                   '\nwrk.headers["Content-Type"] = "application/json"\n')
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{int(seconds)}s", "--latency", "-s", str(lua), url],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = {p: _ms(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M)}
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:.*", out)
    return {"requests_per_s": rps, "p50_ms": pct["50"], "p99_ms": pct["99"],
            "errors": int(bad.group(1)) if bad else 0, **({"socket": 1} if errs else {})}


def grpc_load(target: str, model: str, conns: int, seconds: float) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, str(HERE / "model_server_grpc_load.py"), target, model, str(conns),
         str(seconds)], capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def binary_roundtrip(base: str, repeats: int = 20) -> dict[str, float]:
    x = np.random.default_rng(1).random(1_000_000, dtype=np.float32)
    head = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1_000_000],
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    body = head + x.tobytes()
    headers = {"Inference-Header-Content-Length": str(len(head)),
               "Content-Type": "application/octet-stream"}
    times = []
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)  # a lean client: the
    try:                                                            # server is measured
        for _ in range(repeats + 1):
            t = time.perf_counter()
            conn.request("POST", "/v2/models/echo/infer", body=body, headers=headers)
            r = conn.getresponse()
            content = r.read()
            n = int(r.headers["inference-header-content-length"])
            y = np.frombuffer(content, dtype=np.float32, offset=n)
            times.append(time.perf_counter() - t)
            assert r.status == 200 and np.array_equal(x, y)  # checked outside the timing
    finally:
        conn.close()
    t_med = statistics.median(times[1:])
    return {"tensor_MB": x.nbytes / 1e6, "roundtrip_ms": round(t_med * 1000, 2),
            "MB_per_s": round(x.nbytes / 1e6 / t_med, 1)}


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="tureen-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        build_repository(tmp / "models")
        bare_port, http_port, grpc_port = free_port(), free_port(), free_port()
        nb_http, nb_grpc, bare_grpc = free_port(), free_port(), free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        procs.append(subprocess.Popen([sys.executable, str(HERE / "model_server_bare.py"),
                                       str(bare_port)], env=env))
        procs.append(subprocess.Popen([sys.executable, str(HERE / "model_server_grpc_bare.py"),
                                       str(bare_grpc)], env=env))
        for hp, gp, extra in ((http_port, grpc_port, []),
                              (nb_http, nb_grpc, ["--max_batch_size", "0"])):
            procs.append(subprocess.Popen(
                [sys.executable, "-c", "from tureen.cli.main import main; main()",
                 "serve-model", "--model_repository", str(tmp / "models"), "--host",
                 "127.0.0.1", "--http_port", str(hp), "--grpc_port", str(gp), "--workers", "1",
                 *extra], env=env))
        base = f"http://127.0.0.1:{http_port}"
        nobatch = f"http://127.0.0.1:{nb_http}"
        wait_http(f"{base}/v2/health/ready")
        wait_http(f"{nobatch}/v2/health/ready")
        for _ in range(100):  # the bare server answers 405 to GET once it is up
            try:
                httpx.get(f"http://127.0.0.1:{bare_port}/v1/models/bare:predict")
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        time.sleep(0.5)
        v1 = json.dumps({"instances": [ROW]})
        v2 = json.dumps({"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 10],
                                     "data": ROW}]})
        points: dict[str, tuple[Any, ...]] = {
            "bare_starlette_c16": ("wrk", f"http://127.0.0.1:{bare_port}/v1/models/bare:predict",
                                   v1, 16),
            "trivial_sync_v1_c16": ("wrk", f"{base}/v1/models/trivial:predict", v1, 16),
            "trivial_async_v1_c16": ("wrk", f"{base}/v1/models/trivial_async:predict", v1, 16),
            "sklearn_v1_c1": ("wrk", f"{base}/v1/models/lr:predict", v1, 1),
            "sklearn_v1_c16": ("wrk", f"{base}/v1/models/lr:predict", v1, 16),
            "sklearn_v2_c1": ("wrk", f"{base}/v2/models/lr/infer", v2, 1),
            "sklearn_v2_c16": ("wrk", f"{base}/v2/models/lr/infer", v2, 16),
            "bare_grpc_aio_c16": ("grpc", f"127.0.0.1:{bare_grpc}", "bare", 16),
            "sklearn_grpc_c1": ("grpc", f"127.0.0.1:{grpc_port}", "lr", 1),
            "sklearn_grpc_c16": ("grpc", f"127.0.0.1:{grpc_port}", "lr", 16),
            "sklearn_nobatch_v1_c16": ("wrk", f"{nobatch}/v1/models/lr:predict", v1, 16),
            "sklearn_nobatch_v2_c16": ("wrk", f"{nobatch}/v2/models/lr/infer", v2, 16),
            "sklearn_nobatch_grpc_c16": ("grpc", f"127.0.0.1:{nb_grpc}", "lr", 16),
        }
        results: dict[str, list[dict[str, float]]] = {k: [] for k in points}
        for _ in range(args.runs):
            for key, (kind, target, body, conns) in points.items():
                if kind == "wrk":
                    results[key].append(wrk(target, body, conns, args.duration, tmp))
                else:
                    results[key].append(grpc_load(target, body, conns, args.duration))
        med = {k: median_of(v) for k, v in results.items()}
        binary = binary_roundtrip(base)
        bare = med["bare_starlette_c16"]["requests_per_s"]
        report = {
            "machine": {"cpus": os.cpu_count(), "runs": args.runs, "seconds_per_point":
                        args.duration},
            "medians": med,
            "binary_1M_fp32": binary,
            "ratios": {
                "trivial_sync_vs_bare": round(med["trivial_sync_v1_c16"]["requests_per_s"] / bare,
                                              3),
                "trivial_async_vs_bare": round(
                    med["trivial_async_v1_c16"]["requests_per_s"] / bare, 3),
                "sklearn_v1_vs_kserve_v1": round(
                    med["sklearn_v1_c16"]["requests_per_s"] / KSERVE_REF["v1_rps_c16"], 2),
                "sklearn_v2_vs_kserve_v2": round(
                    med["sklearn_v2_c16"]["requests_per_s"] / KSERVE_REF["v2_rps_c16"], 2),
                "sklearn_grpc_vs_kserve_v2": round(
                    med["sklearn_grpc_c16"]["requests_per_s"] / KSERVE_REF["v2_rps_c16"], 2),
                "sklearn_nobatch_v1_vs_kserve_v1": round(
                    med["sklearn_nobatch_v1_c16"]["requests_per_s"] / KSERVE_REF["v1_rps_c16"], 2),
                "sklearn_nobatch_v2_vs_kserve_v2": round(
                    med["sklearn_nobatch_v2_c16"]["requests_per_s"] / KSERVE_REF["v2_rps_c16"], 2),
                "sklearn_v1_vs_bare": round(med["sklearn_v1_c16"]["requests_per_s"] / bare, 3),
                "sklearn_grpc_vs_bare_grpc_aio": round(
                    med["sklearn_grpc_c16"]["requests_per_s"]
                    / med["bare_grpc_aio_c16"]["requests_per_s"], 3),
                "p99_c16_vs_bare_starlette_p99": {
                    k: round(med[f"sklearn_{k}_c16"]["p99_ms"]
                             / med["bare_starlette_c16"]["p99_ms"], 3)
                    for k in ("v1", "v2")
                },
                "p99_c16_ms_vs_kserve_best_22ms": {
                    k: round(med[f"sklearn_{k}_c16"]["p99_ms"] / 22.0, 3)
                    for k in ("v1", "v2", "grpc")
                },
            },
            "kserve_0_21_reference": KSERVE_REF,
            "targets": {"throughput_vs_kserve": ">= 4", "p99_vs_kserve": "<= 0.25",
                        "trivial_vs_bare": ">= 0.6", "binary_MB_per_s": ">= 300"},
        }
        print(json.dumps(report, indent=2))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
