"""Versions swapped under load, several workers, graceful shutdown, built-in runtimes,
predictor forwarding."""

from __future__ import annotations

import asyncio
import shutil
import signal
import threading
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc

from tureen.codecs.pb import inference_pb2 as pb
from tureen.errors import BackendUnavailableError
from tureen.serving import DataPlane, InferInput, InferRequest
from tureen.serving.clients import predictor_client
from tureen.serving.remote import RemoteModel

from .conftest import N_FEATURES, SLOW, Server, start_server, wait_ready, write_custom, write_lr

ROW = [0.25] * N_FEATURES


async def test_version_swap_under_load_drops_nothing(fresh_repo: Path) -> None:
    write_lr(fresh_repo, "1", 1)
    server = start_server(fresh_repo)  # policy latest: one version at a time
    staged = fresh_repo.parent / "staged"
    write_lr(staged, "2", 2)
    results: list[tuple[int, str]] = []
    stop = asyncio.Event()

    async def load(client: httpx.AsyncClient, v2: bool) -> None:
        while not stop.is_set():
            if v2:
                r = await client.post("/v2/models/lr/infer", json={"inputs": [{
                    "name": "input-0", "datatype": "FP32", "shape": [1, N_FEATURES],
                    "data": ROW}]})
                results.append((r.status_code, r.json().get("model_version", r.text)))
            else:
                r = await client.post("/v1/models/lr:predict", json={"instances": [ROW]})
                results.append((r.status_code, "v1" if r.status_code == 200 else r.text))

    async def grpc_load() -> None:
        req = pb.ModelInferRequest(model_name="lr")
        req.inputs.add(name="input-0", datatype="FP32", shape=[1, N_FEATURES])
        req.raw_input_contents.append(np.asarray([ROW], dtype=np.float32).tobytes())
        async with grpc.aio.insecure_channel(server.grpc_target) as ch:
            infer = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                   request_serializer=pb.ModelInferRequest.SerializeToString,
                                   response_deserializer=pb.ModelInferResponse.FromString)
            while not stop.is_set():
                try:
                    resp = await infer(req)
                    results.append((200, resp.model_version))
                except grpc.aio.AioRpcError as exc:
                    results.append((500, f"{exc.code()}: {exc.details()}"))

    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            tasks = [asyncio.create_task(load(client, i % 2 == 0)) for i in range(6)]
            tasks += [asyncio.create_task(grpc_load()) for _ in range(2)]
            await asyncio.sleep(0.5)
            shutil.move(str(staged / "lr" / "2"), str(fresh_repo / "lr" / "2"))
            r = await client.post("/v2/repository/models/lr/load")
            assert r.status_code == 200, r.text
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*tasks)
            md = (await client.get("/v2/models/lr")).json()
            text = (await client.get("/metrics")).text
    finally:
        assert server.stop() == 0
    failures = [r for r in results if r[0] != 200]
    assert not failures, failures[:5]
    versions = [v for _, v in results if v in ("1", "2")]
    assert "1" in versions and versions[-1] == "2"
    assert md["versions"] == ["2"]  # latest policy: version 1 was retired
    assert 'version="2",protocol="v2",status="ok"' in text


def test_workers_share_ports_and_metrics(fresh_repo: Path) -> None:
    write_custom(fresh_repo, "slow", SLOW)
    server = start_server(fresh_repo, "--workers", "2")
    try:
        with httpx.Client(base_url=server.url) as c:
            for _ in range(40):
                r = c.post("/v1/models/slow:predict", json={"instances": [[0]]},
                           headers={"connection": "close"})
                assert r.status_code == 200
            time.sleep(1.5)  # every worker writes its snapshot at least once a second
            for _ in range(4):  # gRPC answers in every worker too
                assert tgrpc.InferenceServerClient(server.grpc_target).is_server_ready()
            for _ in range(6):
                text = c.get("/metrics", headers={"connection": "close"}).text
                line = next(ln for ln in text.splitlines() if ln.startswith(
                    'tureen_requests_total{model="slow"'))
                assert line.endswith(" 40"), line
    finally:
        assert server.stop() == 0


def test_sigterm_drains_requests_in_flight(fresh_repo: Path) -> None:
    write_custom(fresh_repo, "slow", SLOW)
    server = start_server(fresh_repo)
    out: dict[str, int] = {}

    def call() -> None:
        r = httpx.post(f"{server.url}/v1/models/slow:predict", json={"instances": [[1.0]]},
                       timeout=30)
        out["status"] = r.status_code

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.4)
    server.proc.send_signal(signal.SIGTERM)
    t.join(30)
    assert out.get("status") == 200
    assert server.proc.wait(timeout=30) == 0


def test_sigterm_ends_the_process_even_when_a_predict_never_returns(fresh_repo: Path) -> None:
    write_custom(fresh_repo, "slow", SLOW)
    server = start_server(fresh_repo, "--grace_seconds", "1")

    def call() -> None:
        try:
            httpx.post(f"{server.url}/v1/models/slow:predict", json={"instances": [[3600]]},
                       timeout=30)
        except httpx.HTTPError:
            pass  # the server went away: expected

    t = threading.Thread(target=call, daemon=True)
    t.start()
    time.sleep(0.4)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=30)  # before the fix: never (only kill -9 ended it)
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    assert time.monotonic() - started < 1 + 5 + 3  # grace + watchdog margin + slack


def test_builtin_runtimes(fresh_repo: Path) -> None:
    import lightgbm
    import onnxruntime  # noqa: F401 - the runtime must be importable
    import xgboost
    from skl2onnx import to_onnx  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, N_FEATURES)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    xgb = xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(x, y)
    (fresh_repo / "xgb" / "1").mkdir(parents=True)
    xgb.get_booster().save_model(str(fresh_repo / "xgb" / "1" / "model.json"))
    lgb = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, y)
    (fresh_repo / "lgbm" / "1").mkdir(parents=True)
    lgb.booster_.save_model(str(fresh_repo / "lgbm" / "1" / "model.txt"))
    lr = LogisticRegression().fit(x, y)
    onx = to_onnx(lr, x[:1], options={id(lr): {"zipmap": False}})
    (fresh_repo / "onnx" / "1").mkdir(parents=True)
    (fresh_repo / "onnx" / "1" / "model.onnx").write_bytes(onx.SerializeToString())
    server = start_server(fresh_repo)
    rows = x[:4]
    try:
        with httpx.Client(base_url=server.url) as c:
            r = c.post("/v1/models/xgb:predict", json={"instances": rows.tolist()})
            np.testing.assert_allclose(r.json()["predictions"],
                                       xgb.get_booster().inplace_predict(rows), rtol=1e-6)
            r = c.post("/v1/models/lgbm:predict", json={"instances": rows.tolist()})
            np.testing.assert_allclose(r.json()["predictions"], lgb.booster_.predict(rows),
                                       rtol=1e-6)
            md = c.get("/v2/models/onnx").json()
            assert md["platform"] == "onnxruntime_onnx"
            name = md["inputs"][0]["name"]
            r = c.post("/v2/models/onnx/infer", json={"inputs": [{
                "name": name, "datatype": "FP32", "shape": list(rows.shape),
                "data": rows.reshape(-1).tolist()}]})
            assert r.status_code == 200, r.text
            outs = {o["name"]: o for o in r.json()["outputs"]}
            assert outs["label"]["data"] == lr.predict(rows).tolist()
            assert c.get("/v2/models/xgb").json()["inputs"][0]["shape"] == [-1, N_FEATURES]
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("protocol", ["v1", "v2", "grpc-v2"])
async def test_remote_predictor_clients(server: Server, protocol: str) -> None:
    host = server.grpc_target if protocol == "grpc-v2" else f"127.0.0.1:{server.http_port}"
    client = predictor_client(host, protocol)
    dp = DataPlane()
    m = RemoteModel("front", client, remote_name="lr")
    dp.register(m)
    try:
        v1 = await dp.predict_v1("front", {"instances": [ROW]}, {"x-request-id": "r1"})
        assert len(v1["predictions"]) == 1
        x = np.asarray([ROW, ROW], dtype=np.float32)
        resp = await dp.infer(InferRequest("front", [InferInput("input-0", "FP32", [2, 10], x)]))
        assert resp.outputs[0].data.shape == (2,)
    finally:
        await client.close()
        dp.close()


async def test_remote_predictor_unreachable_is_backend_unavailable() -> None:
    from .conftest import free_port

    client = predictor_client(f"127.0.0.1:{free_port()}", "v2", retries=2, backoff=0.01)
    try:
        x = np.zeros((1, 2), dtype=np.float32)
        with pytest.raises(BackendUnavailableError, match="after 3 attempts"):
            await client.infer(InferRequest("m", [InferInput("x", "FP32", [1, 2], x)]))
    finally:
        await client.close()


def test_serve_model_with_predictor_host(server: Server) -> None:
    front = start_server(None, "--model_name", "front", "--predictor_host",
                         f"127.0.0.1:{server.http_port}", "--predictor_protocol", "v1",
                         "--disable_grpc")
    try:
        r = httpx.post(f"{front.url}/v1/models/front:predict",
                       json={"instances": [[1.0, 2.0]]}, timeout=30)
        assert r.status_code == 404  # the predictor has no model named "front"
        assert "predictor" in r.json()["error"]
    finally:
        assert front.stop() == 0


SLOW_LOAD = '''
import time
from tureen.serving import Model


class SlowLoad(Model):
    def load(self):
        time.sleep(3)
        self.ready = True
        return True

    def predict(self, payload, headers=None):
        return [1]
'''


def test_live_at_once_and_503_until_loaded(fresh_repo: Path) -> None:
    write_custom(fresh_repo, "late", SLOW_LOAD)
    server = start_server(fresh_repo, wait=False)
    try:
        deadline = time.monotonic() + 60
        while True:  # wait until it listens
            try:
                live = httpx.get(f"{server.url}/v2/health/live", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert live.status_code == 200
        ready = httpx.get(f"{server.url}/v2/health/ready")
        r = httpx.post(f"{server.url}/v1/models/late:predict", json={"instances": [[1]]})
        assert ready.status_code == 503 and ready.json() == {"ready": False}
        assert r.status_code == 503 and "loading" in r.json()["error"]
        wait_ready(server)
        r = httpx.post(f"{server.url}/v1/models/late:predict", json={"instances": [[1]]})
        assert r.json() == {"predictions": [1]}
    finally:
        assert server.stop() == 0


def test_a_broken_model_stops_the_server_with_an_error(fresh_repo: Path) -> None:
    """Nothing could be loaded: the server says so and exits non-zero (as KServe does)."""
    (fresh_repo / "broken" / "1").mkdir(parents=True)
    (fresh_repo / "broken" / "1" / "model.joblib").write_bytes(b"not a pickle")
    server = start_server(fresh_repo, wait=False)
    try:
        assert server.proc.wait(timeout=60) == 1
    finally:
        if server.proc.poll() is None:
            server.proc.kill()


HANGS = '''
import time
from tureen.serving import Model


class Hangs(Model):
    def load(self):
        while True:
            time.sleep(1)

    def predict(self, payload, headers=None):
        return [0]
'''


def test_broken_and_hung_models_are_reported_while_the_rest_serve(fresh_repo: Path) -> None:
    """A model whose load() never returns or fails does not keep the others from serving;
    the index says why; SIGTERM still ends the process in time."""
    write_custom(fresh_repo, "fine", SLOW)  # loads at once (a heavy library could be slow
    (fresh_repo / "broken" / "1").mkdir(parents=True)  # to import on a busy machine)
    (fresh_repo / "broken" / "1" / "model.joblib").write_bytes(b"not a pickle")
    write_custom(fresh_repo, "hangs", HANGS)
    server = start_server(fresh_repo, "--model_load_timeout", "8", wait=False)
    try:
        wait_ready(server)
        r = httpx.post(f"{server.url}/v1/models/fine:predict", json={"instances": [[0.0]]})
        assert r.status_code == 200
        index = {m["name"]: m for m in
                 httpx.post(f"{server.url}/v2/repository/index").json()}
        assert index["fine"]["state"] == "READY"
        assert index["broken"]["state"] == "UNAVAILABLE" and index["broken"]["reason"]
        assert index["hangs"]["state"] == "UNAVAILABLE"
        assert "did not finish within 8 s" in index["hangs"]["reason"]
    finally:
        started = time.monotonic()
        assert server.stop(timeout=30) == 0  # the hung load() thread does not hold the exit
        assert time.monotonic() - started < 15
