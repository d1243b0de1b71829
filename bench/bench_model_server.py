"""Model server benchmark: tureen vs KServe 0.21 and a bare Starlette handler, in one run.

Workload: scikit-learn LogisticRegression over 10 Float32 features, one row per request, one
worker. wrk drives v1 and OIP REST, h2load (nghttp2-client) drives OIP gRPC (one ModelInfer
per HTTP/2 stream, raw_input_contents), both native load generators at 1 and 16 connections
against 127.0.0.1. KServe 0.21 serves the same joblib file through its own data plane
(``kserve_sklearn_peer.py``, run from ``--kserve-python``, default
``/work/peers/kserve/bin/python``). A 1M-element FP32 tensor goes through the binary
extension.

The servers start once. Each group of points (``GROUPS``: KServe, tureen with and without
batching on one protocol and concurrency) is measured in ``--pairs`` rounds of one
``--window``-second window per point, every other round in reverse order (``ab.py``), so a
burst of load from another process hits a round, not one side of a ratio. Prints JSON: medians
over windows, each ratio against KServe as the median of its per-round ratios
(``ratios``, with quartiles and extremes in ``ratio_spread``), the load average before and after
each group, and, for the record, ratios against the numbers quoted in the issue.

    python bench/bench_model_server.py [--window 1] [--pairs 8] [--only grpc,v1]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ab

HERE = Path(__file__).parent
KSERVE_REF: dict[str, Any] = {"v1_rps_c16": 1000.0, "v2_rps_c16": 840.0, "p99_ms_c16": (22.0, 34.0),
              "p50_ms_c1": (1.4, 1.5)}
KSERVE_PY = Path("/work/peers/kserve/bin/python")
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
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {"requests_per_s": rps, "p50_ms": pct["50"], "p99_ms": pct["99"], "requests": done,
            "errors": int(bad.group(1)) if bad else 0, **({"socket": 1} if errs else {})}


def grpc_body(path: Path, model: str) -> Path:
    """An h2load request body: one gRPC length-prefixed ModelInferRequest."""
    from tureen.codecs.pb import inference_pb2 as pb

    req = pb.ModelInferRequest(model_name=model)
    req.inputs.add(name="input-0", datatype="FP32", shape=[1, 10])
    req.raw_input_contents.append(np.asarray([ROW], dtype=np.float32).tobytes())
    msg = req.SerializeToString()
    path.write_bytes(b"\x00" + len(msg).to_bytes(4, "big") + msg)
    return path


def check_grpc(target: str, model: str) -> None:
    """One real gRPC call first: h2load sees HTTP status 200 even when grpc-status is not 0."""
    import grpc

    from tureen.codecs.pb import inference_pb2 as pb

    req = pb.ModelInferRequest(model_name=model)
    req.inputs.add(name="input-0", datatype="FP32", shape=[1, 10])
    req.raw_input_contents.append(np.asarray([ROW], dtype=np.float32).tobytes())
    with grpc.insecure_channel(target) as ch:
        call = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                              request_serializer=pb.ModelInferRequest.SerializeToString,
                              response_deserializer=pb.ModelInferResponse.FromString)
        resp = call(req, timeout=30)
    assert resp.outputs, f"{target}: empty ModelInfer response"


def h2load(target: str, body: Path, conns: int, seconds: float, tmp: Path) -> dict[str, float]:
    """gRPC ModelInfer load with h2load; p50/p99 from its per-request log."""
    log = tmp / f"h2load-{target.replace(':', '_')}-{conns}.tsv"
    out = subprocess.run(
        ["h2load", "-t1", f"-c{conns}", "-m1", "-D", str(int(seconds)), "-d", str(body),
         "-H", "content-type: application/grpc", "-H", "te: trailers", f"--log-file={log}",
         f"http://{target}/inference.GRPCInferenceService/ModelInfer"],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out).group(1))  # type: ignore[union-attr]
    rows = [line.split("\t") for line in log.read_text().splitlines() if line]
    log.unlink()  # h2load appends to an existing log file
    lat = np.array([int(r[2]) for r in rows], dtype=np.float64) / 1000.0
    bad = sum(1 for r in rows if r[1] != "200")
    return {"requests_per_s": rps, "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3), "requests": len(rows),
            "errors": bad}


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


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("nan")


#: groups of points measured in alternating rounds (``--only`` picks groups by name); every
#: ratio compares two points of one group, round by round
GROUPS: dict[str, list[str]] = {
    **{p: [f"kserve_{p}_c16", f"sklearn_{p}_c16", f"sklearn_nobatch_{p}_c16"]
       for p in ("v1", "v2")},
    "grpc": ["kserve_grpc_c16", "sklearn_grpc_c16", "sklearn_nobatch_grpc_c16",
             "bare_grpc_aio_c16"],
    **{f"{p}_c1": [f"kserve_{p}_c1", f"sklearn_{p}_c1", f"sklearn_nobatch_{p}_c1"]
       for p in ("v1", "v2", "grpc")},
    "trivial": ["bare_starlette_c16", "trivial_sync_v1_c16", "trivial_async_v1_c16"],
}
PROTOS = ("v1", "v2", "grpc")
#: (section, protocol or None) -> (numerator point, denominator point, window field)
RATIOS: dict[tuple[str, str | None], tuple[str, str, str]] = {
    **{("throughput_c16_vs_kserve", p): (f"sklearn_{p}_c16", f"kserve_{p}_c16",
                                         "requests_per_s") for p in PROTOS},
    **{("throughput_c16_vs_kserve_without_batching", p): (
        f"sklearn_nobatch_{p}_c16", f"kserve_{p}_c16", "requests_per_s") for p in PROTOS},
    **{("p99_c16_vs_kserve", p): (f"sklearn_{p}_c16", f"kserve_{p}_c16", "p99_ms")
       for p in PROTOS},
    **{("p50_c1_vs_kserve", p): (f"sklearn_{p}_c1", f"kserve_{p}_c1", "p50_ms") for p in PROTOS},
    ("trivial_sync_vs_bare", None): ("trivial_sync_v1_c16", "bare_starlette_c16",
                                     "requests_per_s"),
    ("trivial_async_vs_bare", None): ("trivial_async_v1_c16", "bare_starlette_c16",
                                      "requests_per_s"),
    ("sklearn_grpc_vs_bare_grpc_aio", None): ("sklearn_grpc_c16", "bare_grpc_aio_c16",
                                              "requests_per_s"),
    # KServe's server CPU per request over tureen's (4 = a quarter of the CPU per request)
    **{("throughput_c16_vs_kserve_by_server_cpu", p): (
        f"kserve_{p}_c16", f"sklearn_{p}_c16", "server_cpu_us_per_request") for p in PROTOS},
}


def paired_ratios(windows: dict[str, list[dict[str, float]]],
                  specs: dict[tuple[str, str | None], tuple[str, str, str]],
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``ratios`` (median of per-round ratios, the keys README and docs quote) and
    ``ratio_spread`` (quartiles, extremes, rounds) for every spec whose points were measured."""
    ratios: dict[str, Any] = {}
    spreads: dict[str, Any] = {}
    for (section, proto), (num, den, key) in specs.items():
        if num not in windows or den not in windows:
            continue
        sp = ab.paired_ratio(windows[num], windows[den], key)
        if proto is None:
            ratios[section], spreads[section] = round(sp["median"], 2), sp
        else:
            ratios.setdefault(section, {})[proto] = round(sp["median"], 2)
            spreads.setdefault(section, {})[proto] = sp
    return ratios, spreads


def select(only: str | None, names: list[str]) -> list[str]:
    if not only:
        return names
    picked = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in picked if n not in names]
    if unknown:
        sys.exit(f"--only {','.join(unknown)}: not a group; choose from {', '.join(names)}")
    return picked


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ab.add_arguments(ap, "group",
                     "comma-separated groups to measure: " + ", ".join([*GROUPS, "binary"]))
    ap.add_argument("--kserve-python", type=Path, default=KSERVE_PY,
                    help="python of a venv with kserve==0.21.0 and scikit-learn; skipped when "
                         "absent (the issue's quoted numbers are used instead)")
    args = ap.parse_args()
    chosen = select(args.only, [*GROUPS, "binary"])
    for tool, pkg in (("wrk", "wrk"), ("h2load", "nghttp2-client")):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed: apt-get install -y {pkg}")
    kserve = args.kserve_python.exists()
    groups = {g: [k for k in GROUPS[g] if kserve or not k.startswith("kserve_")]
              for g in chosen if g in GROUPS}
    wanted = {k for members in groups.values() for k in members}
    need = {
        "bare": any(k.startswith("bare_starlette") for k in wanted),
        "bare_grpc": any(k.startswith("bare_grpc") for k in wanted),
        "tureen": "binary" in chosen or any(k.startswith(("sklearn_v", "sklearn_grpc",
                                                          "trivial")) for k in wanted),
        "nobatch": any(k.startswith("sklearn_nobatch") for k in wanted),
        "kserve": any(k.startswith("kserve_") for k in wanted),
    }
    tmp = Path(tempfile.mkdtemp(prefix="tureen-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        build_repository(tmp / "models")
        bare_port, http_port, grpc_port = free_port(), free_port(), free_port()
        nb_http, nb_grpc, bare_grpc = free_port(), free_port(), free_port()
        ks_http, ks_grpc = free_port(), free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        servers: dict[str, subprocess.Popen[bytes]] = {}  # by the keys of ``need``
        if need["bare"]:
            servers["bare"] = subprocess.Popen(
                [sys.executable, str(HERE / "model_server_bare.py"), str(bare_port)], env=env)
        if need["bare_grpc"]:
            servers["bare_grpc"] = subprocess.Popen(
                [sys.executable, str(HERE / "model_server_grpc_bare.py"), str(bare_grpc)],
                env=env)
        for name, hp, gp, extra in (("tureen", http_port, grpc_port, []),
                                    ("nobatch", nb_http, nb_grpc, ["--max_batch_size", "0"])):
            if need[name]:
                servers[name] = subprocess.Popen(
                    [sys.executable, "-c", "from tureen.cli.main import main; main()",
                     "serve-model", "--model_repository", str(tmp / "models"), "--host",
                     "127.0.0.1", "--http_port", str(hp), "--grpc_port", str(gp), "--workers",
                     "1", *extra], env=env)
        if need["kserve"]:
            servers["kserve"] = subprocess.Popen(
                [str(args.kserve_python), str(HERE / "kserve_sklearn_peer.py"), "--model_name",
                 "lr", "--http_port", str(ks_http), "--grpc_port", str(ks_grpc),
                 "--enable_latency_logging", "False",
                 str(tmp / "models" / "lr" / "1" / "model.joblib")],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.extend(servers.values())
        base = f"http://127.0.0.1:{http_port}"
        nobatch = f"http://127.0.0.1:{nb_http}"
        ks = f"http://127.0.0.1:{ks_http}"
        grpc_targets = []
        for on, url, gport in ((need["tureen"], base, grpc_port),
                               (need["nobatch"], nobatch, nb_grpc),
                               (need["kserve"], ks, ks_grpc)):
            if on:
                wait_http(f"{url}/v2/health/ready")
                grpc_targets.append(f"127.0.0.1:{gport}")
        for _ in range(100 if need["bare"] else 0):  # the bare server answers 405 to GET
            try:
                httpx.get(f"http://127.0.0.1:{bare_port}/v1/models/bare:predict")
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        time.sleep(0.5)
        body = grpc_body(tmp / "infer_lr.bin", "lr")
        bare_body = grpc_body(tmp / "infer_bare.bin", "bare")
        for t in grpc_targets:
            check_grpc(t, "lr")
        v1 = json.dumps({"instances": [ROW]})
        v2 = json.dumps({"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 10],
                                     "data": ROW}]})
        points: dict[str, tuple[Any, ...]] = {
            "bare_starlette_c16": ("wrk", f"http://127.0.0.1:{bare_port}/v1/models/bare:predict",
                                   v1, 16),
            "trivial_sync_v1_c16": ("wrk", f"{base}/v1/models/trivial:predict", v1, 16),
            "trivial_async_v1_c16": ("wrk", f"{base}/v1/models/trivial_async:predict", v1, 16),
            "bare_grpc_aio_c16": ("h2", f"127.0.0.1:{bare_grpc}", bare_body, 16),
        }
        for label, url, gport in (("sklearn", base, grpc_port),
                                  ("sklearn_nobatch", nobatch, nb_grpc), ("kserve", ks, ks_grpc)):
            for c in (1, 16):
                points[f"{label}_v1_c{c}"] = ("wrk", f"{url}/v1/models/lr:predict", v1, c)
                points[f"{label}_v2_c{c}"] = ("wrk", f"{url}/v2/models/lr/infer", v2, c)
                points[f"{label}_grpc_c{c}"] = ("h2", f"127.0.0.1:{gport}", body, c)

        def server_of(key: str) -> str:
            for prefix, name in (("bare_starlette", "bare"), ("bare_grpc", "bare_grpc"),
                                 ("sklearn_nobatch", "nobatch"), ("kserve", "kserve")):
                if key.startswith(prefix):
                    return name
            return "tureen"

        def run(key: str, seconds: int) -> dict[str, float]:
            kind, target, payload, conns = points[key]
            load = wrk if kind == "wrk" else h2load
            return ab.with_server_cpu(lambda: load(target, payload, conns, seconds, tmp),
                                      servers[server_of(key)].pid)

        load_before = ab.loadavg()
        windows, conditions = ab.measure_groups(
            groups, lambda k: run(k, args.window), args.pairs,
            warmup=(lambda k: run(k, args.warmup)) if args.warmup > 0 else None)
        med = {k: ab.summarize(v) for k, v in windows.items()}
        binary = binary_roundtrip(base) if "binary" in chosen else None
        ratios, spreads = paired_ratios(windows, RATIOS)
        if not kserve:  # against the issue's quoted KServe numbers instead
            for label, section in (("sklearn", "throughput_c16_vs_kserve"),
                                   ("sklearn_nobatch",
                                    "throughput_c16_vs_kserve_without_batching")):
                ref = {p: ratio(med[f"{label}_{p}_c16"]["requests_per_s"],
                                KSERVE_REF[f"{p}_rps_c16"])
                       for p in ("v1", "v2") if f"{label}_{p}_c16" in med}
                if ref:
                    ratios[section] = {**ref, "source": "the issue's quoted KServe numbers "
                                                        "(no KServe venv here)"}
            p99 = {p: ratio(med[f"sklearn_{p}_c16"]["p99_ms"], KSERVE_REF["p99_ms_c16"][0])
                   for p in PROTOS if f"sklearn_{p}_c16" in med}
            if p99:
                ratios["p99_c16_vs_kserve"] = p99
        ref_issue = {p: ratio(med[f"sklearn_{p}_c16"]["requests_per_s"],
                              KSERVE_REF[f"{p}_rps_c16"])
                     for p in ("v1", "v2") if f"sklearn_{p}_c16" in med}
        if ref_issue:
            ratios["throughput_c16_vs_issue_reference"] = ref_issue
        report: dict[str, Any] = {
            "machine": {"cpus": os.cpu_count(), "load_average_before": load_before,
                        "load_average_after": ab.loadavg(),
                        "groups": conditions, "pairs": args.pairs,
                        "seconds_per_window": args.window, "warmup_seconds": args.warmup,
                        "method": "rounds of one window per point of a group, every other "
                                  "round reversed; ratio = median of per-round ratios",
                        "load_generators": {"rest": "wrk -t1", "grpc": "h2load -t1 -m1"},
                        "kserve": "0.21 measured in this run" if kserve else "not installed"},
            "medians": med,
            **({"binary_1M_fp32": binary} if binary is not None else {}),
            "ratios": ratios,
            "ratio_spread": spreads,
            **({"windows": windows} if args.raw else {}),
            "kserve_issue_reference": KSERVE_REF,
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
