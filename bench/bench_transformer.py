"""Feature-enriched inference benchmark: fused, split over HTTP, and the KServe + Feast chain.

- fused: ``tureen serve`` of the quickstart repo (SQLite online store, the quickstart
  scikit-learn model, default missing policy): account id + amount in, fraud probability out;
  KServe v1 and OIP REST with wrk, OIP gRPC with a small async client; 1 and 16 connections.
- split over HTTP (the KServe deployment shape, three processes): ``tureen serve-features`` ←
  ``tureen serve-transformer`` (features from the feature server) → ``tureen serve-model``
  (v1 and v2), and the same with the transformer reading SQLite itself.
- peer chain, same workload, same run: Feast 0.67 ``feast serve`` ← a KServe 0.21 transformer
  (async httpx to the feature server, as the KServe Feast sample does with requests) → a
  KServe 0.21 predictor over HTTP. Skipped (reference numbers quoted) when the peer venvs are
  missing. The split/peer workload is one entity x 10 Float32 features and a logistic
  regression over them; random entity ids; one worker per process.

    python bench/bench_transformer.py [--duration 5] [--runs 3] [--no-peers]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).parent))
from bench_feature_server import (
    CLI,
    FEAST_BIN,
    FEATURES,
    feast_repo,
    free_port,
    median_of,
    process,
    tureen_repo,
    wrk,
)

KSERVE_PY = Path("/work/peers/kserve/bin/python")
KSERVE_REFERENCE = {"rps_c16": (150.0, 185.0), "mean_ms_c16": 100.0}
TARGETS = {"fused_p50_ms_c1": 1.0, "fused_rps_c16": 3000.0, "split_vs_kserve_c16": 10.0}

V1_LUA = '''
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
math.randomseed(11)
request = function()
  local id = 1001 + math.random(0, 999)
  return wrk.format(nil, nil, nil, '{"instances": [{"account_id": ' .. id .. ', "amount": 42.5}]}')
end
'''

V2_LUA = '''
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
math.randomseed(13)
request = function()
  local id = 1001 + math.random(0, 999)
  return wrk.format(nil, nil, nil, '{"inputs": [{"name": "account_id", "datatype": "INT64", ' ..
    '"shape": [1], "data": [' .. id .. ']}, {"name": "amount", "datatype": "FP64", ' ..
    '"shape": [1], "data": [42.5]}]}')
end
'''

GRPC_LOAD = textwrap.dedent('''
    import asyncio, json, sys, time
    import grpc, numpy as np
    from tureen.codecs.pb import inference_pb2 as pb

    async def main(target, model, conns, seconds):
        rng = np.random.default_rng(5)
        payloads = []
        for i in range(256):
            req = pb.ModelInferRequest(model_name=model)
            req.inputs.add(name="account_id", datatype="INT64", shape=[1])
            req.inputs.add(name="amount", datatype="FP64", shape=[1])
            req.raw_input_contents.append(np.array([1001 + rng.integers(0, 1000)],
                                                   dtype=np.int64).tobytes())
            req.raw_input_contents.append(np.array([42.5]).tobytes())
            payloads.append(req.SerializeToString())
        lat = []
        async with grpc.aio.insecure_channel(target) as ch:
            call = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                  request_serializer=None, response_deserializer=None)
            await call(payloads[0])
            deadline = time.perf_counter() + seconds
            async def worker(k):
                i = k
                while time.perf_counter() < deadline:
                    t = time.perf_counter()
                    await call(payloads[i % 256])
                    lat.append(time.perf_counter() - t)
                    i += 1
            t0 = time.perf_counter()
            await asyncio.gather(*(worker(k) for k in range(conns)))
            elapsed = time.perf_counter() - t0
        a = np.array(lat) * 1000
        return {"p50_ms": round(float(np.percentile(a, 50)), 3),
                "p90_ms": round(float(np.percentile(a, 90)), 3),
                "p99_ms": round(float(np.percentile(a, 99)), 3),
                "rps": round(len(lat) / elapsed, 1), "non_2xx": 0.0}

    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]),
                                      float(sys.argv[4])))))
''')

KSERVE_PREDICTOR = textwrap.dedent('''
    import sys, joblib, numpy as np, kserve

    class LR(kserve.Model):
        def __init__(self, name, path):
            super().__init__(name)
            self.clf = joblib.load(path)
            self.ready = True

        def predict(self, payload, headers=None):
            x = np.asarray(payload["instances"], dtype=np.float32)
            return {"predictions": self.clf.predict_proba(x).tolist()}

    if __name__ == "__main__":
        args, _ = kserve.model_server.parser.parse_known_args()
        kserve.ModelServer(workers=1).start([LR(args.model_name, sys.argv[-1])])
''')

KSERVE_TRANSFORMER = textwrap.dedent('''
    import sys, httpx, kserve

    FEATURES = [f"account_stats:f{i}" for i in range(10)]

    class FeastTransformer(kserve.Model):
        """What teams hand-write today: fetch features from the Feast server, then the
        KServe data plane forwards {"instances": ...} to the predictor over HTTP."""

        def __init__(self, name, feast_url):
            super().__init__(name)
            self.feast_url = feast_url
            self.http = httpx.AsyncClient(timeout=10)
            self.ready = True

        async def preprocess(self, payload, headers=None):
            ids = [row["account_id"] for row in payload["instances"]]
            r = await self.http.post(self.feast_url + "/get-online-features",
                                     json={"features": FEATURES, "entities": {"account_id": ids}})
            doc = r.json()
            names = doc["metadata"]["feature_names"]
            cols = {n: res["values"] for n, res in zip(names, doc["results"])}
            return {"instances": [[cols[f.split(":")[1]][i] for f in FEATURES]
                                  for i in range(len(ids))]}

    if __name__ == "__main__":
        args, _ = kserve.model_server.parser.parse_known_args()
        kserve.ModelServer(workers=1).start([FeastTransformer(args.model_name, sys.argv[-1])])
''')

SPLIT_V1_LUA = V1_LUA


def grpc_load(target: str, model: str, conns: int, seconds: float) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", GRPC_LOAD, target, model, str(conns),
                          str(seconds)], capture_output=True, text=True, check=True).stdout
    res: dict[str, float] = json.loads(out)
    return res


def quickstart_repo(root: Path) -> Path:
    from tureen.quickstart import QuickstartResult, _Steps, build_repo

    repo = root / "quickstart"
    result = QuickstartResult(repo)
    build_repo(repo, _Steps(result, None), 1000, result)
    return repo


def stats_model(repo: Path) -> Path:
    """A logistic regression over f0..f9 at models/lr/1 (predict_proba)."""
    rng = np.random.default_rng(1)
    x = rng.random((2000, len(FEATURES))).astype(np.float32)
    y = (x @ rng.normal(size=len(FEATURES)) > 0).astype(np.int64)
    d = repo / "models" / "lr" / "1"
    d.mkdir(parents=True)
    joblib.dump(LogisticRegression().fit(x, y), d / "model.joblib")
    (d / "model-settings.json").write_text(json.dumps({"method": "predict_proba"}))
    with (repo / "features.py").open("a") as f:
        f.write("\nfrom tureen import FeatureService\n"
                "stats = FeatureService(name='stats', features=[account_stats])\n")
    from tureen.store import FeatureStore

    with FeatureStore(repo) as fs:
        fs.apply()
    return d


def run_wrk(url: str, lua: str, runs: int, seconds: float, tmp: Path,
            conns: tuple[int, ...] = (1, 16)) -> dict[str, dict[str, float]]:
    out: dict[str, list[dict[str, float]]] = {f"c{c}": [] for c in conns}
    for _ in range(runs):
        for c in conns:
            out[f"c{c}"].append(wrk(url, lua, c, seconds, tmp))
    return {k: median_of(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install -y wrk")
    d, runs = args.duration, args.runs
    res: dict[str, Any] = {}
    v1_body = json.dumps({"instances": [{"account_id": 1001, "amount": 42.5}]}).encode()
    with tempfile.TemporaryDirectory(prefix="tureen-bench-tf-") as tmp_s:
        tmp = Path(tmp_s)
        # ---- fused ------------------------------------------------------------------------
        qs = quickstart_repo(tmp)
        hp, gp = free_port(), free_port()
        with process([*CLI, "serve", "--repo", str(qs), "--host", "127.0.0.1", "--http-port",
                      str(hp), "--grpc-port", str(gp), "--workers", "1"],
                     f"http://127.0.0.1:{hp}/v1/models/fraud:predict", tmp / "fused.log",
                     method="POST", body=v1_body):
            base = f"http://127.0.0.1:{hp}"
            res["fused_v1"] = run_wrk(f"{base}/v1/models/fraud:predict", V1_LUA, runs, d, tmp)
            res["fused_v2"] = run_wrk(f"{base}/v2/models/fraud/infer", V2_LUA, runs, d, tmp)
            res["fused_grpc"] = {f"c{c}": median_of([
                grpc_load(f"127.0.0.1:{gp}", "fraud", c, d) for _ in range(runs)])
                for c in (1, 16)}
        # ---- split over HTTP (tureen) and the KServe + Feast chain --------------------------
        repo = tureen_repo(tmp)
        model_dir = stats_model(repo)
        fs_port, pred_port = free_port(), free_port()
        stats_body = json.dumps({"instances": [{"account_id": 1001}]}).encode()
        lua = V1_LUA.replace(', "amount": 42.5', "")
        with process([*CLI, "serve-features", "--repo", str(repo), "--host", "127.0.0.1",
                      "--port", str(fs_port), "--no-grpc"],
                     f"http://127.0.0.1:{fs_port}/health", tmp / "features.log"), \
            process([*CLI, "serve-model", "--model_dir", str(model_dir.parent),
                     "--model_name", "lr", "--host", "127.0.0.1", "--http_port", str(pred_port),
                     "--grpc_port", str(free_port())],
                    f"http://127.0.0.1:{pred_port}/v2/health/ready", tmp / "predictor.log"):
            for label, extra in (
                ("split_http_v1", ["--predictor_protocol", "v1",
                                   "--feature_server", f"http://127.0.0.1:{fs_port}"]),
                ("split_http_v2", ["--predictor_protocol", "v2",
                                   "--feature_server", f"http://127.0.0.1:{fs_port}"]),
                ("split_http_v1_local_features", ["--predictor_protocol", "v1"]),
            ):
                tp = free_port()
                with process([*CLI, "serve-transformer", "--model_name", "stats",
                              "--feature_service", "stats", "--repo", str(repo),
                              "--predictor_host", f"127.0.0.1:{pred_port}",
                              "--predictor_model", "lr", "--host", "127.0.0.1",
                              "--http_port", str(tp), "--grpc_port", str(free_port()), *extra],
                             f"http://127.0.0.1:{tp}/v1/models/stats:predict",
                             tmp / f"{label}.log", method="POST", body=stats_body):
                    res[label] = run_wrk(f"http://127.0.0.1:{tp}/v1/models/stats:predict", lua,
                                         runs, d, tmp, conns=(16,))
        peers = not args.no_peers and KSERVE_PY.exists() and (FEAST_BIN / "feast").exists()
        if peers:
            frepo = feast_repo(tmp)
            assert frepo is not None
            (tmp / "kpred.py").write_text(KSERVE_PREDICTOR)
            (tmp / "ktrans.py").write_text(KSERVE_TRANSFORMER)
            fp, kp, kt = free_port(), free_port(), free_port()
            env = {**os.environ, "FEAST_USAGE": "False"}
            probe = json.dumps({"features": ["account_stats:f0"],
                                "entities": {"account_id": [1001]}}).encode()
            with process([str(FEAST_BIN / "feast"), "serve", "-h", "127.0.0.1", "-p", str(fp),
                          "--no-access-log", "-w", "1"],
                         f"http://127.0.0.1:{fp}/get-online-features", tmp / "feast.log",
                         cwd=frepo, env=env, method="POST", body=probe), \
                process([str(KSERVE_PY), str(tmp / "kpred.py"), "--model_name", "stats",
                         "--http_port", str(kp), "--grpc_port", str(free_port()),
                         str(model_dir / "model.joblib")],
                        f"http://127.0.0.1:{kp}/v2/health/ready", tmp / "kpred.log"), \
                process([str(KSERVE_PY), str(tmp / "ktrans.py"), "--model_name", "stats",
                         "--predictor_host", f"127.0.0.1:{kp}", "--http_port", str(kt),
                         "--grpc_port", str(free_port()), f"http://127.0.0.1:{fp}"],
                        f"http://127.0.0.1:{kt}/v1/models/stats:predict", tmp / "ktrans.log",
                        method="POST", body=stats_body):
                res["kserve_feast_chain"] = run_wrk(
                    f"http://127.0.0.1:{kt}/v1/models/stats:predict", lua, runs, d, tmp,
                    conns=(16,))
    kserve_rps = (res["kserve_feast_chain"]["c16"]["rps"] if "kserve_feast_chain" in res
                  else statistics.mean(KSERVE_REFERENCE["rps_c16"]))
    split_best = max(res[k]["c16"]["rps"] for k in res if k.startswith("split_http"))
    out = {
        "benchmark": "feature-enriched inference, one worker per process",
        "duration_s": d, "runs": runs, "cpus": os.cpu_count(),
        "results": res,
        "kserve_source": "measured in this run" if "kserve_feast_chain" in res else
        "reference (earlier on this machine)",
        "kserve_reference": KSERVE_REFERENCE,
        "split_http_vs_kserve_c16": {k: round(res[k]["c16"]["rps"] / kserve_rps, 1)
                                     for k in res if k.startswith("split_http")},
        "targets": TARGETS,
        "meets_targets": {
            "fused_p50_ms_c1": res["fused_v1"]["c1"]["p50_ms"] <= TARGETS["fused_p50_ms_c1"],
            "fused_rps_c16": res["fused_v1"]["c16"]["rps"] >= TARGETS["fused_rps_c16"],
            "split_vs_kserve_c16": split_best / kserve_rps >= TARGETS["split_vs_kserve_c16"],
        },
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
