"""Servers for the transformer tests, started once per session and in parallel.

- ``tureen serve`` of a fraud repo ("predictor server"): fused transformers (one per missing
  policy, one with a user script), the repo's models (fraud_model, echo, slow) and the
  feature routes;
- ``tureen serve-transformer`` (KServe container contract) for each predictor protocol;
- a minimal OIP server that is not tureen (Starlette, JSON only), also flaky on demand;
- ``tureen serve`` with remote-predictor transformers (that OIP server, a closed port, the
  slow model, the flaky model) and one reading features from the remote feature server.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from sklearn.linear_model import LogisticRegression
from tests.e2e.feature_server.servers import (
    SERVICE,
    Server,
    free_port,
    make_repo,
    run_python,
    start,
    train_model,
    write_model_py,
)

ECHO = '''
from tureen.serving import InferRequest, Model


class Echo(Model):
    def predict(self, payload, headers=None):
        return payload.inputs[0].data if isinstance(payload, InferRequest) else payload
'''

SLOW = '''
import time
from tureen.serving import Model


class Slow(Model):
    def predict(self, payload, headers=None):
        time.sleep(3)
        return [[0.0, 1.0]]
'''

SCRIPT = '''
import numpy as np


class Transformer:
    def __init__(self):
        self.calls = 0

    def preprocess(self, inputs):
        # requests carry "user" ids like "acct-1001"; the feature step needs account_id
        return {"account_id": [int(u.split("-")[1]) for u in inputs["user"]],
                "amount": inputs["amount"]}

    def postprocess(self, outputs):
        return np.asarray(outputs)[:, 1]
'''

AFTER = '''
class Transformer:
    def preprocess(self, features):
        features["credit_score"] = features["credit_score"] * 0 + 1.0
        return features
'''

OIP_SERVER = '''
import joblib, numpy as np, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

clf = joblib.load("MODEL")
state = {"flaky": 0}
SIG = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [-1, 7]}],
       "outputs": [{"name": "probabilities", "datatype": "FP64", "shape": [-1, 2]}]}


async def ready(request):
    return JSONResponse({"ready": True})


async def meta(request):
    return JSONResponse({"name": request.path_params["name"], "platform": "plain", **SIG})


async def infer(request):
    name = request.path_params["name"]
    if name == "flaky":
        state["flaky"] += 1
        if state["flaky"] <= 2:
            return JSONResponse({"error": "warming up"}, status_code=503)
    body = await request.json()
    inp = body["inputs"][0]
    if inp["name"] != "features" or inp["datatype"] != "FP64":
        return JSONResponse({"error": "bad input " + inp["name"]}, status_code=400)
    x = np.asarray(inp["data"], dtype=np.float64).reshape(inp["shape"])
    p = clf.predict_proba(x)
    return JSONResponse({"model_name": name, "outputs": [
        {"name": "probabilities", "datatype": "FP64", "shape": list(p.shape),
         "data": p.reshape(-1).tolist()}]})


async def calls(request):
    return JSONResponse(state)


app = Starlette(routes=[
    Route("/v2/health/ready", ready), Route("/v2/models/{name}", meta),
    Route("/v2/models/{name}/infer", infer, methods=["POST"]), Route("/calls", calls)])
uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")
'''


@dataclass
class Env:
    repo: Path
    clf: LogisticRegression
    main: Server  # fused transformers + models + feature routes
    split: dict[str, Server]  # predictor protocol -> serve-transformer
    remote: Server  # transformers calling remote predictors / features
    oip_url: str


def _cfg(path: Path, **cfg: Any) -> str:
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.fixture(scope="session")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("transformer")
    repo = make_repo(root / "fraud")
    clf = train_model(repo)
    write_model_py(repo, "echo", ECHO)
    write_model_py(repo, "slow", SLOW)
    (root / "script.py").write_text(textwrap.dedent(SCRIPT))
    (root / "after.py").write_text(textwrap.dedent(AFTER))
    defaults = {"credit_score": -1, "account_age_days": -2, "has_2fa_installed": True,
                "num_transactions_7d": -3, "total_amount_7d": -4.5, "has_fraud_7d": False,
                "amount_vs_avg_7d": -6.5}
    fused = [
        _cfg(root / "fused.yaml", name="fraud", feature_service=SERVICE,
             predictor={"model": "fraud_model"}),
        _cfg(root / "reject.yaml", name="echo_reject", feature_service=SERVICE,
             predictor={"model": "echo"}),
        _cfg(root / "default.yaml", name="echo_default", feature_service=SERVICE,
             predictor={"model": "echo"}, missing={"policy": "default", "defaults": defaults}),
        _cfg(root / "null.yaml", name="echo_null", feature_service=SERVICE,
             predictor={"model": "echo"}, missing={"policy": "null"}),
        _cfg(root / "script.yaml", name="scripted", feature_service=SERVICE,
             predictor={"model": "fraud_model"},
             script={"path": str(root / "script.py"), "position": "before_features"}),
        _cfg(root / "after.yaml", name="after", feature_service=SERVICE,
             predictor={"model": "echo"},
             script={"path": str(root / "after.py"), "position": "after_features"}),
    ]
    oip_port = free_port()
    oip = run_python(OIP_SERVER.replace("MODEL", str(repo / "models/fraud_model/1/model.joblib")),
                     root / "oip.log", oip_port)
    servers: list[Server] = []
    try:
        args = ["serve", "--repo", str(repo), "--host", "127.0.0.1", "--models"]
        for f in fused:
            args += ["-t", f]
        main = start(args, root / "main.log")
        servers.append(main)
        split: dict[str, Server] = {}
        for proto in ("v1", "v2", "grpc-v2"):
            host = main.grpc_target if proto == "grpc-v2" else f"127.0.0.1:{main.http_port}"
            split[proto] = start(
                ["serve-transformer", "--model_name", "fraud", "--predictor_host", host,
                 "--predictor_protocol", proto, "--predictor_model", "fraud_model",
                 "--feature_service", SERVICE, "--repo", str(repo), "--host", "127.0.0.1",
                 "--entity_key", "account_id=account_id"],
                root / f"split-{proto}.log", port_flags=("--http_port", "--grpc_port"))
            servers.append(split[proto])
        oip_host = f"127.0.0.1:{oip_port}"
        remote_cfgs = [
            _cfg(root / "plain.yaml", name="plain_oip", feature_service=SERVICE,
                 predictor={"host": oip_host, "protocol": "v2", "model": "lr"}),
            _cfg(root / "flaky.yaml", name="flaky", feature_service=SERVICE, retries=3,
                 backoff_seconds=0.05,
                 predictor={"host": oip_host, "protocol": "v2", "model": "flaky"}),
            _cfg(root / "down.yaml", name="down", feature_service=SERVICE, retries=2,
                 backoff_seconds=0.01,
                 predictor={"host": f"127.0.0.1:{free_port()}", "protocol": "v2"}),
            _cfg(root / "slow.yaml", name="slow", feature_service=SERVICE, retries=0,
                 timeout_seconds=0.5,
                 predictor={"host": f"127.0.0.1:{main.http_port}", "protocol": "v1",
                            "model": "slow"}),
            _cfg(root / "remote_features.yaml", name="remote_features",
                 feature_service=SERVICE,
                 features={"source": "remote", "url": main.url},
                 predictor={"host": main.grpc_target, "protocol": "grpc-v2",
                            "model": "fraud_model"}),
        ]
        args = ["serve", "--repo", str(repo), "--host", "127.0.0.1", "--no-models"]
        for f in remote_cfgs:
            args += ["-t", f]
        remote = start(args, root / "remote.log")
        servers.append(remote)
        yield Env(repo, clf, main, split, remote, f"http://{oip_host}")
    finally:
        for s in servers:
            s.stop()
        oip.terminate()
        oip.wait(10)
