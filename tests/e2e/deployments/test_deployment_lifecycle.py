"""Register two versions, deploy, switch under load with zero failures, roll back, canary
split, idle unload and reload, inference log flushed on shutdown, KServe export."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests.e2e.deployments.conftest import SERVICE, Server, serve, tureen

from tureen.inference_log.dataset import read_log

BODY = {"instances": [{"account_id": 1001}]}


class Load:
    """Client threads sending requests back to back, recording (served version, ok)."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url = url + "/v1/models/fraud:predict"
        self.results: list[list[tuple[float, int]]] = [[] for _ in range(threads)]
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, i: int) -> None:
        with httpx.Client(timeout=30) as c:
            deadline = time.monotonic() + 120  # bounded even if stop is never called
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    r = c.post(self.url, json=BODY)
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    continue
                if r.status_code != 200:
                    self.errors.append(f"{r.status_code} {r.text}")
                    continue
                self.results[i].append((r.json()["predictions"][0], 200))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def served(self) -> list[float]:
        return [v for per in self.results for v, _ in per]

    def wait_for(self, version: float, n: int = 20, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(len(p) >= n and all(v == version for v, _ in p[-n:]) for p in self.results):
                return
            time.sleep(0.1)
        raise AssertionError(f"version {version} did not take over; errors: {self.errors[:3]}")


SERVED = {"fraud": 0}


def _predict(server: Server, name: str = "fraud") -> float:
    r = httpx.post(f"{server.url}/v1/models/{name}:predict", json=BODY, timeout=30)
    assert r.status_code == 200, r.text
    SERVED[name] = SERVED.get(name, 0) + 1
    return float(r.json()["predictions"][0])


def test_lifecycle(repo: Path, tmp_path: Path) -> None:
    r = tureen("models", "list", "vmodel", "--repo", str(repo), "--json")
    assert [m["version"] for m in json.loads(r.stdout)] == [1, 2]
    tureen("deploy", "create", "fraud", "--model", "vmodel:1", "--feature-service", SERVICE,
           "--logging", "ALL", "--repo", str(repo))
    tureen("deploy", "create", "idle", "--model", "vmodel", "--feature-service", SERVICE,
           "--idle-unload", "1", "--repo", str(repo))
    tureen("deploy", "start", "fraud", "--repo", str(repo))
    tureen("deploy", "start", "idle", "--repo", str(repo))
    listed = json.loads(tureen("deploy", "list", "--repo", str(repo), "--json").stdout)
    assert {d["name"]: (d["version"], d["state"]) for d in listed} == {
        "fraud": (1, "started"), "idle": (2, "started")}

    server = serve(repo, tmp_path / "serve.log")
    try:
        assert _predict(server) == 1.0

        # ---- switch under load: zero failed requests, each client moves 1 -> 2 once -----
        with Load(server.url) as load:
            load.wait_for(1.0, n=10)
            tureen("deploy", "update", "fraud", "--version", "2", "--repo", str(repo))
            load.wait_for(2.0)
        assert load.errors == []
        SERVED["fraud"] += len(load.served())
        for client in load.results:
            seq = [v for v, _ in client]
            first2 = seq.index(2.0)
            assert set(seq[:first2]) == {1.0} and set(seq[first2:]) == {2.0}

        # ---- roll back under load ----------------------------------------------------------
        with Load(server.url) as load:
            load.wait_for(2.0, n=5)
            tureen("deploy", "update", "fraud", "--rollback", "--repo", str(repo))
            load.wait_for(1.0)
        assert load.errors == []
        SERVED["fraud"] += len(load.served())
        status = json.loads(tureen("deploy", "status", "fraud", "--repo", str(repo),
                                   "--json", "--url", server.url).stdout)
        assert status["version"] == 1 and status["server"]["ready"] is True

        # ---- canary: 20% to version 2 over 2,000 requests, within +-5% ------------------
        tureen("deploy", "update", "fraud", "--canary-version", "2", "--canary-percent", "20",
               "--repo", str(repo))
        deadline = time.monotonic() + 60
        while _predict(server) != 2.0:  # the server picked the canary up
            assert time.monotonic() < deadline
        with httpx.Client(timeout=30) as c:
            got = [c.post(f"{server.url}/v1/models/fraud:predict", json=BODY)
                   for _ in range(2000)]
        assert all(r.status_code == 200 for r in got)
        SERVED["fraud"] += len(got)
        share = sum(r.json()["predictions"][0] == 2.0 for r in got) / len(got)
        assert 0.15 <= share <= 0.25, share
        deadline = time.monotonic() + 30  # per-version metrics published by the server
        while True:
            st = json.loads(tureen("deploy", "status", "fraud", "--repo", str(repo),
                                   "--json").stdout)
            per: dict[str, int] = {v: s["requests"] for w in st["workers"]
                                   for v, s in w["versions"].items()}
            if per.get("2", 0) >= 400 and per.get("1", 0) >= 1600:
                break
            assert time.monotonic() < deadline, st["workers"]
            time.sleep(0.5)
        assert st["workers"][0]["canary"] == {"version": 2, "percent": 20.0}
        # the same per-version counts on the Prometheus endpoint
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        scraped = {v: float(m.group(1)) for v in ("1", "2") if (m := re.search(
            r'^tureen_deployment_requests_total\{deployment="fraud",version="' + v +
            r'",status="ok"\} (\S+)$', text, re.M))}
        assert scraped.get("2", 0) >= 400 and scraped.get("1", 0) >= 1600, scraped
        assert 'tureen_deployment_request_duration_seconds_count{deployment="fraud"' in text

        # ---- idle unload, then reload on the next request (cold start logged) ------------
        assert _predict(server, "idle") == 2.0
        log_file = repo / ".tureen" / "logs" / "idle-predictor.log"
        deadline = time.monotonic() + 60
        while "unloaded after" not in (log_file.read_text() if log_file.exists() else ""):
            assert time.monotonic() < deadline, "the idle deployment was never unloaded"
            time.sleep(0.2)
        assert _predict(server, "idle") == 2.0
        assert "cold start" in log_file.read_text()
        logs = tureen("deploy", "logs", "idle", "--tail", "5", "--repo", str(repo)).stdout
        assert "cold start" in logs
    finally:
        code = server.stop()
    assert code == 0, (tmp_path / "serve.log").read_text()

    # ---- the inference log was flushed on shutdown: one row per successful request -------
    table = read_log(str(repo / "data" / "inference_log"), "fraud")
    assert table.num_rows == SERVED["fraud"]  # nothing lost, nothing duplicated
    assert len(set(table.column("request_id").to_pylist())) == SERVED["fraud"]
    versions = table.column("model_version").to_pylist()
    assert {"1", "2"} <= set(versions)
    assert "feature.credit_score" in table.column_names
    import pyarrow as pa  # features keep their schema dtypes, not the model's float matrix

    assert table.schema.field("feature.credit_score").type == pa.int64()
    assert table.schema.field("feature.has_2fa_installed").type == pa.bool_()
    assert table.column("entity.account_id").to_pylist()[0] == 1001
    assert not list((repo / "data" / "inference_log").rglob("*.tmp"))


def test_export_kserve_manifest_is_a_valid_inference_service(repo: Path, tmp_path: Path) -> None:
    from tests.e2e.deployments.kserve_schema import validate_inference_service

    tureen("deploy", "create", "exp", "--model", "vmodel:1", "--feature-service", SERVICE,
           "--logging", "ALL", "--log-sink", "http://logger.default/", "--batching",
           "max_batch_size=16,max_latency_ms=20", "--idle-unload", "300", "--workers", "2",
           "--repo", str(repo))
    tureen("deploy", "update", "exp", "--canary-version", "2", "--canary-percent", "25",
           "--repo", str(repo))
    out = tmp_path / "k8s"
    r = tureen("deploy", "export", "exp", "--target", "kserve", "--out", str(out),
               "--storage-uri", "s3://bucket/models", "--repo", str(repo), "--json",
               "--bundle-online-store", "--tureen-requirement", "tureen[redis]")
    files = json.loads(r.stdout)
    manifest = yaml.safe_load(Path(files["manifest"]).read_text())
    validate_inference_service(manifest)
    spec = manifest["spec"]
    assert spec["predictor"]["minReplicas"] == 0  # idle unload -> scale to zero
    assert spec["predictor"]["logger"] == {"mode": "all", "url": "http://logger.default/"}
    assert spec["predictor"]["batcher"] == {"maxBatchSize": 16, "maxLatency": 20}
    assert spec["predictor"]["canaryTrafficPercent"] == 25
    env = spec["predictor"]["containers"][0]["env"]
    assert {"name": "STORAGE_URI", "value": "s3://bucket/models/vmodel/2"} in env
    args = spec["transformer"]["containers"][0]["args"]
    assert args[:2] == ["--model_name", "exp"] and "--predictor_protocol" in args
    assert args[args.index("--workers") + 1] == "2"
    # the bind and the auth are explicit: no serving.auth in the repo → mesh, said in a comment
    assert args[args.index("--host") + 1] == "0.0.0.0" and "--insecure" in args
    text = Path(files["manifest"]).read_text()
    for line_no, line in enumerate(lines := text.splitlines()):
        if line.strip() == "- --insecure":
            assert lines[line_no - 1].strip().startswith("#")
            assert "mesh" in "\n".join(lines[line_no - 5:line_no])
    assert text.count("- --insecure") == 2  # the transformer and the tureen predictor
    docker = Path(files["dockerfile"]).read_text()
    assert "--host 0.0.0.0" in docker and "--insecure" in docker
    assert docker.count("FROM ") == 2 and "COPY requirements.txt" in docker
    assert docker.index("COPY requirements.txt") < docker.index("COPY repo/")
    assert (out / "repo" / "tureen.yaml").is_file()


def test_export_sklearn_uses_kserve_runtime(repo: Path, tmp_path: Path) -> None:
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from tests.e2e.deployments.kserve_schema import validate_inference_service

    jsonschema = pytest.importorskip("jsonschema")
    x = np.random.default_rng(0).normal(size=(30, 6))
    joblib.dump(LogisticRegression().fit(x, x[:, 0] > 0), tmp_path / "model.joblib")
    tureen("models", "register", "skl", str(tmp_path / "model.joblib"), "-f", "sklearn",
           "--repo", str(repo))
    tureen("deploy", "create", "plain", "--model", "skl", "--repo", str(repo))
    r = tureen("deploy", "export", "plain", "--out", str(tmp_path / "k"), "--repo", str(repo),
               "--json")
    files = json.loads(r.stdout)
    manifest = yaml.safe_load(Path(files["manifest"]).read_text())
    validate_inference_service(manifest)
    model = manifest["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "sklearn"} and model["protocolVersion"] == "v2"
    assert model["storageUri"].endswith("/models/skl/1")
    assert manifest["spec"]["predictor"]["minReplicas"] == 1
    assert "transformer" not in manifest["spec"]
    assert any("local path" in w for w in files["warnings"])
    bad = {**manifest, "spec": {"predictor": {**manifest["spec"]["predictor"],
                                              "batcher": {"maxLatencyMs": 5}}}}
    with pytest.raises(jsonschema.ValidationError):
        validate_inference_service(bad)
