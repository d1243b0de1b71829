"""Every route and gRPC method × every kind of caller, against running servers with token and
OIDC auth on: no credentials, wrong role, right role, revoked, expired, wrong audience (and an
expired JWT, a garbage token, a non-Bearer scheme). 401 / 403 / 200 exactly: a bad token never
yields 200; a refused caller learns nothing about what is served.

The operations come from the live route tables (``RestApp.operations()``, the Feast routes'
``operations()``) and the gRPC method table, so a route or method added later is covered: the
credential cases that need no example (no or bad credentials → 401 / UNAUTHENTICATED) run for
every one of them; the role cases need an example request below.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import grpc
import httpx
import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from tests.e2e.auth.jwks_server import Issuer
from tests.e2e.feature_server.servers import Server, make_repo, start

from tureen.auth.tokens import Tokens
from tureen.codecs.pb import inference_pb2 as pb
from tureen.serving.dataplane import DataPlane
from tureen.store import FeatureStore
from tureen.transports.grpc.handlers import METHODS, SERVICE_NAME, STREAMS
from tureen.transports.rest.app import RestApp
from tureen.transports.rest.feast import feature_routes

pytestmark = pytest.mark.slow

EXPLAINER = '''
import numpy as np
from tureen.serving import Model


class WithExplain(Model):
    def load(self):
        self.ready = True
        return True

    def predict(self, payload, headers=None):
        return np.asarray(payload["instances"], dtype=float).sum(axis=1)

    def explain(self, payload, headers=None):
        return {"explanations": [1.0]}
'''

CLICKS = """
from tureen import Entity, Field, FileSource, Float64, Int64, PushSource, StreamFeatureView

user = Entity(name="user", join_keys=["user_id"], dtype=Int64)
clicks = PushSource(name="clicks", batch_source=FileSource(path="data/clicks/"))
last_click = StreamFeatureView(name="last_click", entities=[user], source=clicks,
                               schema=[Field("price", Float64)])
"""
ROW = [0.1, 0.2, 0.3, 0.4]
V2 = {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 4], "data": ROW}]}
CASES = ("none", "wrong_role", "right_role", "revoked", "expired", "wrong_audience",
         "expired_jwt", "garbage", "basic")
BAD = ("revoked", "expired", "wrong_audience", "expired_jwt", "garbage", "basic")
#: the POSIX shared memory object the shared memory examples register (same host)
SHM_NAME = f"tureen_matrix_{uuid.uuid4().hex[:8]}"
SHM_KEY = "/" + SHM_NAME
SHM_REGION = {"key": SHM_KEY, "offset": 0, "byte_size": 64}


@dataclass
class World:
    models: Server
    features: Server
    creds: dict[str, dict[str, str]]  # case or role -> headers
    issuer: Issuer
    repo: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("matrix")
    repo = make_repo(tmp / "fraud")
    (repo / "clicks.py").write_text(CLICKS)  # a push source feeding a stream view (/ingest)
    with FeatureStore(repo) as store:
        store.apply()
    issuer = Issuer()
    with (repo / "tureen.yaml").open("a") as f:
        f.write(f"serving:\n  auth:\n    type: [token, oidc]\n    oidc:\n"
                f"      issuer: {issuer.url}\n      audience: tureen\n"
                "      jwks_min_refresh_seconds: 0\n")
    models = tmp / "models"
    x = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    for name in ("lr", "spare"):
        (models / name / "1").mkdir(parents=True)
        joblib.dump(LogisticRegression().fit(x, x[:, 0] > 0), models / name / "1" / "model.joblib")
    (models / "m" / "1").mkdir(parents=True)
    (models / "m" / "1" / "model.py").write_text(EXPLAINER)
    tokens = Tokens(FeatureStore(repo).registry)
    creds: dict[str, dict[str, str]] = {"none": {}}
    for role in ("reader", "writer", "predictor", "deployer", "admin"):
        creds[role] = {"authorization": f"Bearer {tokens.create([role], name=role)[0]}"}
    revoked, _ = tokens.create(["admin"], name="revoked")
    tokens.revoke("revoked")
    expired, _ = tokens.create(["admin"], name="expired", expires_in=timedelta(seconds=1))
    creds["revoked"] = {"authorization": f"Bearer {revoked}"}
    creds["expired"] = {"authorization": f"Bearer {expired}"}
    creds["wrong_audience"] = {"authorization": "Bearer " + issuer.token(aud="other",
                                                                        roles=["admin"])}
    creds["expired_jwt"] = {"authorization": "Bearer " + issuer.token(exp_in=-600,
                                                                     roles=["admin"])}
    creds["oidc_admin"] = {"authorization": "Bearer " + issuer.token(roles=["admin"])}
    creds["garbage"] = {"authorization": "Bearer tureen_000000000000_" + "A" * 43}
    creds["basic"] = {"authorization": "Basic YWRtaW46YWRtaW4="}
    shm = shared_memory.SharedMemory(SHM_NAME, create=True, size=4096)
    m = start(["serve-model", "--model_repository", str(models), "--repo", str(repo),
               "--enable_model_control", "--max_batch_size", "0", "--allow_shared_memory"],
              tmp / "models.log")
    fs = start(["serve-features", "--repo", str(repo)], tmp / "features.log",
               ready="/health", port_flags=("--port", "--grpc-port"))
    time.sleep(1.1)  # the short-lived token has expired
    deadline = time.monotonic() + 60
    while httpx.get(m.url + "/v2/health/ready").status_code != 200:
        assert time.monotonic() < deadline, (tmp / "models.log").read_text()
        time.sleep(0.2)
    r = httpx.post(m.url + "/v2/systemsharedmemory/region/pre/register", json=SHM_REGION,
                   headers=creds["admin"])
    assert r.status_code == 200, r.text
    yield World(m, fs, creds, issuer, repo)
    try:
        assert m.stop() == 0, (tmp / "models.log").read_text()
        assert fs.stop() == 0, (tmp / "features.log").read_text()
    finally:
        issuer.close()
        shm.close()
        shm.unlink()


# --- the REST routes ------------------------------------------------------------------------

@dataclass(frozen=True)
class Rest:
    path: str
    body: Any = None
    right: str = "admin"       # a role that may
    wrong: str | None = None   # a role that may not (None: any valid caller may)
    public: bool = False       # answers without credentials (health)
    ok: int = 200


MODEL_ROUTES: dict[str, Rest] = {
    "GET /": Rest("/", public=True),
    "GET /v1/models": Rest("/v1/models", right="predictor"),  # filtered, see below
    "GET /v2": Rest("/v2"),
    "GET /v2/": Rest("/v2/"),
    "GET /v2/health/live": Rest("/v2/health/live", public=True),
    "GET /v2/health/ready": Rest("/v2/health/ready", public=True),
    "GET /metrics": Rest("/metrics", public=True),
    "POST /v2/repository/index": Rest("/v2/repository/index", {}, "deployer", "predictor"),
    "GET /v1/models/{name}": Rest("/v1/models/lr", None, "predictor", "reader"),
    "POST /v1/models/{name}:predict": Rest("/v1/models/lr:predict", {"instances": [ROW]},
                                           "predictor", "reader"),
    "POST /v1/models/{name}:explain": Rest("/v1/models/m:explain", {"instances": [ROW]},
                                           "predictor", "writer"),
    "GET /v2/models/{name}": Rest("/v2/models/lr", None, "predictor", "reader"),
    "GET /v2/models/{name}/versions/{version}": Rest("/v2/models/lr/versions/1", None,
                                                     "predictor", "reader"),
    "GET /v2/models/{name}/ready": Rest("/v2/models/lr/ready", None, "predictor", "reader"),
    "GET /v2/models/{name}/versions/{version}/ready": Rest("/v2/models/lr/versions/1/ready",
                                                           None, "predictor", "reader"),
    "POST /v2/models/{name}/infer": Rest("/v2/models/lr/infer", V2, "predictor", "reader"),
    "POST /v2/models/{name}/versions/{version}/infer": Rest("/v2/models/lr/versions/1/infer",
                                                            V2, "predictor", "writer"),
    "POST /v2/repository/models/{name}/load": Rest("/v2/repository/models/spare/load", {},
                                                   "deployer", "predictor"),
    "POST /v2/repository/models/{name}/unload": Rest("/v2/repository/models/spare/unload", {},
                                                     "deployer", "predictor"),
    # Triton's extensions: statistics and configuration are predict on that model; the list
    # of every model's statistics shows only the models the caller may call
    "GET /v2/models/stats": Rest("/v2/models/stats", right="predictor"),
    "GET /v2/models/{name}/stats": Rest("/v2/models/lr/stats", None, "predictor", "reader"),
    "GET /v2/models/{name}/versions/{version}/stats": Rest("/v2/models/lr/versions/1/stats",
                                                           None, "predictor", "reader"),
    "GET /v2/models/{name}/config": Rest("/v2/models/lr/config", None, "predictor", "reader"),
    "GET /v2/models/{name}/versions/{version}/config": Rest("/v2/models/lr/versions/1/config",
                                                            None, "predictor", "writer"),
    # shared memory: one region is predict (clients that infer use regions), every region
    # (other callers' too) is model_control; "pre" is registered by the fixture
    "GET /v2/systemsharedmemory/status": Rest("/v2/systemsharedmemory/status", None,
                                              "predictor", "reader"),
    "GET /v2/systemsharedmemory/region/{region}/status": Rest(
        "/v2/systemsharedmemory/region/pre/status", None, "predictor", "reader"),
    "POST /v2/systemsharedmemory/region/{region}/register": Rest(
        "/v2/systemsharedmemory/region/reg/register", SHM_REGION, "predictor", "writer"),
    "POST /v2/systemsharedmemory/region/{region}/unregister": Rest(
        "/v2/systemsharedmemory/region/reg/unregister", {}, "predictor", "reader"),
    "POST /v2/systemsharedmemory/unregister": Rest("/v2/systemsharedmemory/unregister", {},
                                                   "deployer", "predictor"),
    "GET /v2/cudasharedmemory/status": Rest("/v2/cudasharedmemory/status", None, "predictor",
                                            "reader"),
    "GET /v2/cudasharedmemory/region/{region}/status": Rest(
        "/v2/cudasharedmemory/region/c/status", None, "predictor", "reader", ok=404),
    "POST /v2/cudasharedmemory/region/{region}/register": Rest(
        "/v2/cudasharedmemory/region/c/register", {"raw_handle": {"b64": "AA=="},
                                                   "device_id": 0, "byte_size": 64},
        "predictor", "reader", ok=400),
    "POST /v2/cudasharedmemory/region/{region}/unregister": Rest(
        "/v2/cudasharedmemory/region/c/unregister", {}, "predictor", "reader", ok=404),
    "POST /v2/cudasharedmemory/unregister": Rest("/v2/cudasharedmemory/unregister", {},
                                                 "deployer", "predictor"),
}
NOW = "2026-01-01T00:00:00+00:00"
FEAST_ROUTES: dict[str, Rest] = {
    "POST /get-online-features": Rest("/get-online-features", {
        "feature_service": "fraud_detection_v1", "entities": {"account_id": [1001]}},
        "reader", "predictor"),
    "POST /push": Rest("/push", {
        "push_source_name": "transaction_stats_push", "to": "online",
        "df": {"account_id": [1001], "num_transactions_7d": [3], "total_amount_7d": [1.5],
               "has_fraud_7d": [False], "event_timestamp": [NOW], "created": [NOW]}},
        "writer", "reader"),
    "POST /write-to-online-store": Rest("/write-to-online-store", {
        "feature_view_name": "account_profile",
        "df": {"account_id": [777001], "credit_score": [600], "account_age_days": [3],
               "has_2fa_installed": [True], "event_timestamp": [NOW], "created": [NOW]}},
        "writer", "reader"),
    "POST /materialize": Rest("/materialize", {"start_ts": "2025-01-01T00:00:00Z",
                                               "end_ts": "2025-01-02T00:00:00Z"},
                              "writer", "reader"),
    "POST /materialize-incremental": Rest("/materialize-incremental",
                                          {"end_ts": "2025-01-02T00:00:00Z"},
                                          "writer", "predictor"),
    "GET /health": Rest("/health", public=True),
    "POST /ingest/{source}": Rest("/ingest/clicks?wait=online", [
        {"user_id": 1, "price": 2.5, "event_timestamp": NOW}], "writer", "reader"),
}
# a FeatureService served as a model is a feature read, not a predict
FEATURE_MODEL = Rest("/v2/models/fraud_detection_v1/infer", {"inputs": [
    {"name": "account_id", "datatype": "INT64", "shape": [1], "data": [1001]}]},
    "reader", "predictor")


def rest_call(server: Server, route: Rest, headers: dict[str, str]) -> httpx.Response:
    method = "POST" if route.body is not None else "GET"
    return httpx.request(method, server.url + route.path, headers=headers, timeout=30,
                         content=json.dumps(route.body) if route.body is not None else None)


def expected(route: Rest, case: str) -> int:
    if case in BAD:
        return 401  # invalid credentials are refused on every route, open ones too
    if route.public:
        return route.ok
    if case == "none":
        return 401
    if case == "wrong_role" and route.wrong is not None:
        return 403
    return route.ok


def check_rest(world: World, server: Server, table: dict[str, Rest], operations: list[str]
               ) -> None:
    missing = [op for op in operations if op not in table]
    assert not missing, f"add an example request to the auth matrix for: {missing}"
    failures = []
    for op in operations:
        route = table[op]
        for case in CASES:
            role = {"wrong_role": route.wrong or "reader", "right_role": route.right}.get(case)
            headers = world.creds[role if role else case]
            r = rest_call(server, route, headers)
            want = expected(route, case)
            if r.status_code != want:
                failures.append(f"{op} [{case}]: {r.status_code} {r.text[:200]} (want {want})")
            if r.status_code == 401:
                assert r.headers.get("www-authenticate", "").startswith("Bearer")
            if r.status_code in (401, 403):
                assert "lr" not in r.text and "spare" not in r.text and "/tmp" not in r.text
    assert not failures, "\n".join(failures)


def test_every_model_server_route(world: World) -> None:
    ops = RestApp(DataPlane()).operations()
    check_rest(world, world.models, MODEL_ROUTES, ops)
    # lists show only what the caller may call
    reader = rest_call(world.models, MODEL_ROUTES["GET /v1/models"], world.creds["reader"])
    assert reader.status_code == 200 and reader.json()["models"] == []
    pred = rest_call(world.models, MODEL_ROUTES["GET /v1/models"], world.creds["predictor"])
    assert set(pred.json()["models"]) >= {"lr", "m"}
    # an unknown model is 403 for a caller who may not predict: no hint it does not exist
    r = httpx.post(world.models.url + "/v1/models/nope:predict", json={"instances": [ROW]},
                   headers=world.creds["reader"])
    assert r.status_code == 403
    r = httpx.post(world.models.url + "/v1/models/nope:predict", json={"instances": [ROW]},
                   headers=world.creds["predictor"])
    assert r.status_code == 404
    # an OIDC caller with the right role gets in
    r = httpx.post(world.models.url + "/v1/models/lr:predict", json={"instances": [ROW]},
                   headers=world.creds["oidc_admin"])
    assert r.status_code == 200, r.text


def test_every_feature_server_route(world: World) -> None:
    with FeatureStore(world.repo) as store:
        ops = [op for table in feature_routes(store) for op in table.operations()]
    check_rest(world, world.features, FEAST_ROUTES, ops)
    for case in CASES:
        role = {"wrong_role": FEATURE_MODEL.wrong, "right_role": FEATURE_MODEL.right}.get(case)
        r = rest_call(world.features, FEATURE_MODEL, world.creds[role or case])
        assert r.status_code == expected(FEATURE_MODEL, case), (case, r.text)


# --- the gRPC methods -----------------------------------------------------------------------

def _infer(model: str) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=model)
    req.inputs.add(name="input-0", datatype="FP32", shape=[1, 4])
    req.raw_input_contents.append(np.asarray([ROW], dtype=np.float32).tobytes())
    return req


@dataclass(frozen=True)
class Rpc:
    request: Any
    right: str = "admin"
    wrong: str | None = None
    public: bool = False
    ok: grpc.StatusCode = grpc.StatusCode.OK


GRPC: dict[str, Rpc] = {
    "ServerLive": Rpc(pb.ServerLiveRequest(), public=True),
    "ServerReady": Rpc(pb.ServerReadyRequest(), public=True),
    "ServerMetadata": Rpc(pb.ServerMetadataRequest()),
    "ModelReady": Rpc(pb.ModelReadyRequest(name="lr"), "predictor", "reader"),
    "ModelMetadata": Rpc(pb.ModelMetadataRequest(name="lr"), "predictor", "reader"),
    "ModelInfer": Rpc(_infer("lr"), "predictor", "writer"),
    "RepositoryIndex": Rpc(pb.RepositoryIndexRequest(), "deployer", "predictor"),
    "RepositoryModelLoad": Rpc(pb.RepositoryModelLoadRequest(model_name="spare"), "deployer",
                               "reader"),
    "RepositoryModelUnload": Rpc(pb.RepositoryModelUnloadRequest(model_name="spare"),
                                 "deployer", "predictor"),
    "ModelStatistics": Rpc(pb.ModelStatisticsRequest(name="lr"), "predictor", "reader"),
    "ModelConfig": Rpc(pb.ModelConfigRequest(name="lr"), "predictor", "writer"),
    "SystemSharedMemoryStatus": Rpc(pb.SystemSharedMemoryStatusRequest(), "predictor", "reader"),
    "SystemSharedMemoryRegister": Rpc(pb.SystemSharedMemoryRegisterRequest(
        name="greg", key=SHM_KEY, offset=0, byte_size=64), "predictor", "reader"),
    "SystemSharedMemoryUnregister": Rpc(pb.SystemSharedMemoryUnregisterRequest(name="greg"),
                                        "predictor", "reader"),
    "CudaSharedMemoryStatus": Rpc(pb.CudaSharedMemoryStatusRequest(), "predictor", "reader"),
    "CudaSharedMemoryRegister": Rpc(pb.CudaSharedMemoryRegisterRequest(
        name="c", raw_handle=b"\0", device_id=0, byte_size=64), "predictor", "reader",
        ok=grpc.StatusCode.INVALID_ARGUMENT),
    "CudaSharedMemoryUnregister": Rpc(pb.CudaSharedMemoryUnregisterRequest(), "deployer",
                                      "predictor"),
    # bidirectional: credentials are checked when the stream opens (a call status), the
    # caller's role for each request in it (an in-stream error naming the request)
    "ModelStreamInfer": Rpc(_infer("lr"), "predictor", "reader"),
}


def grpc_code(channel: grpc.Channel, method: str, request: Any, headers: dict[str, str]
              ) -> grpc.StatusCode:
    """The call's status; on a stream, a refused request in it counts as PERMISSION_DENIED."""
    streaming = method in STREAMS
    req_t, resp_t = (STREAMS if streaming else METHODS)[method]
    kind = channel.stream_stream if streaming else channel.unary_unary
    call = kind(f"/{SERVICE_NAME}/{method}", request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=resp_t.FromString)
    request = request if request is not None else req_t()
    md = tuple(headers.items())
    try:
        answers = (list(call(iter([request]), timeout=30, metadata=md)) if streaming
                   else [call(request, timeout=30, metadata=md)])
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    assert len(answers) == 1, answers
    if streaming and answers[0].error_message:
        assert "do not allow predict" in answers[0].error_message, answers[0].error_message
        return grpc.StatusCode.PERMISSION_DENIED
    return grpc.StatusCode.OK


def test_every_grpc_method(world: World) -> None:
    failures = []
    missing = [m for m in [*METHODS, *STREAMS] if m not in GRPC]
    with grpc.insecure_channel(world.models.grpc_target) as ch:
        for method in [*METHODS, *STREAMS]:
            rpc = GRPC.get(method)
            for case in CASES:
                if rpc is None and case not in ("none", *BAD):
                    continue  # a new method: the credential cases still run, add an example
                role = ({"wrong_role": rpc.wrong or "reader", "right_role": rpc.right}.get(case)
                        if rpc is not None else None)
                code = grpc_code(ch, method, rpc.request if rpc else None,
                                 world.creds[role or case])
                if case in BAD or (case == "none" and not (rpc and rpc.public)):
                    want = grpc.StatusCode.UNAUTHENTICATED
                elif rpc is not None and case == "wrong_role" and rpc.wrong is not None \
                        and not rpc.public:
                    want = grpc.StatusCode.PERMISSION_DENIED
                else:
                    want = rpc.ok if rpc is not None else grpc.StatusCode.OK
                if code != want:
                    failures.append(f"{method} [{case}]: {code.name} (want {want.name})")
    assert not failures, "\n".join(failures)
    assert not missing, f"add an example request to the auth matrix for: {missing}"


def test_route_templates_are_the_served_ones() -> None:
    app = RestApp(DataPlane())
    for op in [*app.PATTERNS, *app._triton.operations()]:
        method, template = op.split(" ", 1)
        path = template.replace("{name}", "x").replace("{version}", "1").replace(
            "{region}", "r")
        match = app._match(path)
        assert match is not None and match[0] == method, op
