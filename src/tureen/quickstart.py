"""``tureen quickstart``: the whole path, end to end, in a temporary folder.

fresh fraud repo → synthetic data → apply → materialize → point-in-time training set →
train (scikit-learn) → register as version 1 → ``tureen serve`` with a fused feature
transformer → requests over KServe v1, OIP REST and OIP gRPC → predictions and a latency
summary → clean shutdown. Every step reports progress through ``on_step``; any failure
raises ``QuickstartError`` naming the step (the CLI exits non-zero).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tureen.errors import TureenError

MODEL_NAME = "fraud_model"
TRANSFORMER = "fraud"
SERVICE = "fraud_detection_v2"
StepHook = Callable[[str, str], None]  # (event: "start" | "done", message)


class QuickstartError(TureenError):
    """A quickstart step failed; the message names the step."""


@dataclass
class QuickstartResult:
    repo: Path
    steps: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    total_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"repo": str(self.repo), "steps": self.steps, "metrics": self.metrics,
                "predictions": self.predictions, "latency_ms": self.latency_ms,
                "total_seconds": round(self.total_seconds, 2)}


class _Steps:
    def __init__(self, result: QuickstartResult, hook: StepHook | None) -> None:
        self.result = result
        self.hook = hook or (lambda event, msg: None)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[dict[str, Any]]:
        info: dict[str, Any] = {"step": title}
        self.hook("start", title)
        t = time.perf_counter()
        try:
            yield info
        except QuickstartError:
            raise
        except Exception as exc:
            raise QuickstartError(f"quickstart step '{title}' failed: {exc}") from exc
        info["seconds"] = round(time.perf_counter() - t, 3)
        self.result.steps.append(info)
        detail = info.get("detail")
        self.hook("done", f"{title} ({info['seconds']:.2f} s)" + (f": {detail}" if detail else ""))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def build_repo(repo: Path, steps: _Steps, accounts: int, result: QuickstartResult) -> list[str]:
    """Steps up to a registered model; returns the model's feature order."""
    import pandas as pd

    from tureen.examples.fraud import create_repo
    from tureen.store import FeatureStore

    with steps.step("create the fraud-detection repo with synthetic data") as s:
        create_repo(repo, accounts=accounts, days=30)
        labels = pd.read_parquet(repo / "data" / "labels.parquet")
        s["detail"] = f"{accounts} accounts, {len(labels)} labelled transactions"
    store = FeatureStore(repo)
    with steps.step("apply the feature definitions") as s:
        plan = store.apply()
        s["detail"] = f"{len(plan.changes)} definitions"
    with steps.step("materialize to the online store") as s:
        now = datetime.now(UTC)
        done = store.materialize(now - timedelta(days=31), now + timedelta(minutes=1))
        s["detail"] = ", ".join(f"{r.view}: {r.rows} rows" for r in done)
    with steps.step("build a point-in-time training set") as s:
        job = store.get_historical_features(labels[["account_id", "event_timestamp", "amount",
                                                    "is_fraud"]], feature_service=SERVICE)
        frame = job.to_df()
        features = list(job.feature_names)
        train_path = repo / "data" / "training_set.parquet"
        frame.to_parquet(train_path, index=False)
        s["detail"] = f"{len(frame)} rows x {len(features)} features"
    with steps.step("train a scikit-learn model") as s:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score

        xf = frame[features].astype("float64")
        medians = {str(k): float(v) for k, v in xf.median().items()}
        x = xf.fillna(medians).to_numpy()
        y = frame["is_fraud"].to_numpy()
        cut = int(len(x) * 0.8)  # train on the past, evaluate on the future
        mean, std = x[:cut].mean(axis=0), x[:cut].std(axis=0) + 1e-9
        clf = LogisticRegression(max_iter=2000)
        clf.fit((x[:cut] - mean) / std, y[:cut])
        # Fold the scaling into the weights: one estimator, no pipeline at serving time.
        clf.coef_ = clf.coef_ / std
        clf.intercept_ = clf.intercept_ - (clf.coef_ * mean).sum(axis=1)
        auc = float(roc_auc_score(y[cut:], clf.predict_proba(x[cut:])[:, 1]))
        result.metrics = {"auc": round(auc, 4), "train_rows": cut, "test_rows": len(x) - cut}
        s["detail"] = f"logistic regression, test AUC {auc:.3f}"
    with steps.step(f"register the model as {MODEL_NAME} version 1") as s:
        version = _register(repo, clf, result.metrics, train_path)
        s["detail"] = version
    _write_serving_config(repo, features, medians)
    return features


def _register(repo: Path, clf: Any, metrics: dict[str, float], train_path: Path) -> str:
    import joblib

    from tureen.models.registry import ModelRegistry

    with tempfile.TemporaryDirectory(prefix="tureen-model-") as tmp:
        joblib.dump(clf, Path(tmp) / "model.joblib")
        mv = ModelRegistry.for_repo(repo).register(
            MODEL_NAME, tmp, "sklearn", metrics=metrics, feature_service=SERVICE,
            training_set=train_path, description="quickstart fraud model",
            method="predict_proba")  # serve class probabilities, not labels
        return f"{mv.name} v{mv.version} at {mv.uri}"


def _write_serving_config(repo: Path, features: list[str], medians: dict[str, float]) -> None:
    import yaml

    serving = {"serving": {"transformers": [{
        "name": TRANSFORMER,
        "feature_service": SERVICE,
        "entity_keys": {"account_id": "account_id"},
        "predictor": {"model": MODEL_NAME},
        "missing": {"policy": "default",
                    "defaults": {f: float(medians[f]) for f in features}},
    }]}}
    with (repo / "tureen.yaml").open("a") as f:
        f.write("\n# added by `tureen quickstart`: a fused feature transformer\n")
        f.write(yaml.safe_dump(serving, sort_keys=False))


@contextlib.contextmanager
def running_server(repo: Path, http_port: int, grpc_port: int,
                   timeout: float = 45.0) -> Iterator[subprocess.Popen[bytes]]:
    cmd = [sys.executable, "-c", "from tureen.cli.main import main; main()", "serve",
           "--repo", str(repo), "--host", "127.0.0.1", "--http-port", str(http_port),
           "--grpc-port", str(grpc_port)]
    log_path = repo / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{http_port}/v2/models/{TRANSFORMER}/ready"
        while True:
            if proc.poll() is not None:
                raise QuickstartError(
                    f"the server exited with code {proc.returncode}:\n"
                    + log_path.read_text()[-2000:])
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise QuickstartError(
                    f"the server was not ready within {timeout:.0f} s:\n"
                    + log_path.read_text()[-2000:])
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _fraud_p(pred: Any) -> float:
    return float(pred[1] if isinstance(pred, list) else pred)


def send_requests(http_port: int, grpc_port: int, accounts: list[tuple[int, float]],
                  repeats: int) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Score ``accounts`` over each protocol; time ``repeats`` single-row calls on each."""
    from tureen.serving.clients import predictor_client
    from tureen.serving.inference import InferInput, InferRequest

    base = f"http://127.0.0.1:{http_port}"
    out: list[dict[str, Any]] = []
    lat: dict[str, list[float]] = {"v1": [], "v2": [], "grpc": []}
    with httpx.Client(base_url=base, timeout=10.0) as http:
        def v1(rows: list[tuple[int, float]]) -> list[Any]:
            r = http.post(f"/v1/models/{TRANSFORMER}:predict", json={
                "instances": [{"account_id": a, "amount": m} for a, m in rows]})
            r.raise_for_status()
            preds: list[Any] = r.json()["predictions"]
            return preds

        def v2(rows: list[tuple[int, float]]) -> list[Any]:
            r = http.post(f"/v2/models/{TRANSFORMER}/infer", json={"inputs": [
                {"name": "account_id", "datatype": "INT64", "shape": [len(rows)],
                 "data": [a for a, _ in rows]},
                {"name": "amount", "datatype": "FP64", "shape": [len(rows)],
                 "data": [m for _, m in rows]}]})
            r.raise_for_status()
            o = r.json()["outputs"][0]
            got: list[Any] = np.asarray(o["data"]).reshape(o["shape"]).tolist()
            return got

        p1, p2 = v1(accounts), v2(accounts)
        for _ in range(repeats):
            t = time.perf_counter()
            v1(accounts[:1])
            lat["v1"].append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            v2(accounts[:1])
            lat["v2"].append((time.perf_counter() - t) * 1000)

    async def grpc_calls() -> list[Any]:
        client = predictor_client(f"127.0.0.1:{grpc_port}", "grpc-v2", timeout=10.0)

        def req(rows: list[tuple[int, float]]) -> InferRequest:
            ids = np.array([a for a, _ in rows], dtype=np.int64)
            amt = np.array([m for _, m in rows], dtype=np.float64)
            return InferRequest(TRANSFORMER, [InferInput("account_id", "INT64", [len(rows)], ids),
                                              InferInput("amount", "FP64", [len(rows)], amt)])
        try:
            resp = await client.infer(req(accounts))
            one = req(accounts[:1])
            for _ in range(repeats):
                t = time.perf_counter()
                await client.infer(one)
                lat["grpc"].append((time.perf_counter() - t) * 1000)
        finally:
            await client.close()
        preds: list[Any] = resp.outputs[0].data.tolist()
        return preds

    p3 = asyncio.run(grpc_calls())
    for (acct, amount), a, b, c in zip(accounts, p1, p2, p3, strict=True):
        out.append({"account_id": acct, "amount": amount, "p_fraud_v1": round(_fraud_p(a), 4),
                    "p_fraud_v2": round(_fraud_p(b), 4), "p_fraud_grpc": round(_fraud_p(c), 4)})
    summary = {k: {"p50": round(statistics.median(v), 3),
                   "p99": round(float(np.percentile(v, 99)), 3),
                   "mean": round(statistics.fmean(v), 3), "n": len(v)}
               for k, v in lat.items() if v}
    return out, summary


def run_quickstart(
    *, accounts: int = 1000, repeats: int = 200, keep: Path | None = None,
    on_step: StepHook | None = None, http_port: int | None = None, grpc_port: int | None = None,
) -> QuickstartResult:
    """Run the demo; the server listens on ``http_port`` / ``grpc_port`` (free ones when
    None)."""
    t0 = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="tureen-quickstart-") if keep is None else None
    repo = (Path(tmp) / "fraud") if tmp else Path(keep or ".")
    result = QuickstartResult(repo)
    steps = _Steps(result, on_step)
    try:
        build_repo(repo, steps, accounts, result)
        http_port = http_port or _free_port()
        grpc_port = grpc_port or _free_port()
        with steps.step("start `tureen serve` (fused feature transformer)") as s:
            server = running_server(repo, http_port, grpc_port)
            server.__enter__()
            s["detail"] = f"http :{http_port}, grpc :{grpc_port}"
        try:
            with steps.step("score over KServe v1, OIP REST and OIP gRPC") as s:
                sample = [(1001, 25.0), (1002, 480.0), (1003, 60.0), (1500, 1200.0),
                          (999_999, 75.0)]
                result.predictions, result.latency_ms = send_requests(
                    http_port, grpc_port, sample, repeats)
                mismatched = [p for p in result.predictions
                              if not p["p_fraud_v1"] == p["p_fraud_v2"] == p["p_fraud_grpc"]]
                if mismatched:
                    raise QuickstartError(f"protocols disagree: {mismatched}")
                s["detail"] = f"{len(sample)} accounts x 3 protocols + {3 * repeats} timed calls"
        finally:
            with steps.step("shut the server down"):
                server.__exit__(None, None, None)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    result.total_seconds = time.perf_counter() - t0
    return result
