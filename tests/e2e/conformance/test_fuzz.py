"""A hypothesis fuzzer over HTTP/2 frame sequences, OIP bodies (REST JSON, the binary
extension, gRPC messages) and Feast bodies, against real server processes: the process
stays up, its memory stays bounded, a legitimate client is served after every batch, and a
client's mistake never gets a 500 / INTERNAL."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.e2e.conformance.conftest import rss_mb
from tests.e2e.conformance.h2peer import PREFACE, Peer, legit_call, request_headers
from tests.e2e.feature_server.servers import Server, make_repo, start
from tests.e2e.server_process import ServerProcess

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("TUREEN_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])

FRAME_TYPES = list(range(0, 11))
frame = st.tuples(
    st.sampled_from(FRAME_TYPES),
    st.integers(0, 0xFF),  # flags
    st.sampled_from([0, 1, 3, 5, 7, 2, 2**31 - 1]),  # stream id
    st.binary(max_size=64),
)


def encode(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + \
        struct.pack(">I", sid & 0x7FFFFFFF) + payload


@pytest.fixture(scope="module")
def baseline(own: ServerProcess) -> Iterator[float]:
    before = rss_mb(own.proc.pid)
    yield before
    assert own.proc.poll() is None, "the server died during fuzzing"
    assert rss_mb(own.proc.pid) - before < 150, "memory grew while fuzzing"
    assert legit_call(own.grpc_target)


@FUZZ
@given(frames=st.lists(frame, max_size=12), with_request=st.booleans())
def test_frame_sequences(own: ServerProcess, baseline: float,
                         frames: list[tuple[int, int, int, bytes]], with_request: bool) -> None:
    with Peer(own.grpc_target, timeout=3) as p:
        if with_request:  # a valid call first: the random frames then hit a live stream
            p.send(p.headers(1, request_headers()))
        p.raw(b"".join(encode(*fr) for fr in frames))
        out = p.outcome(1, timeout=0.3)
    assert out.grpc_status != "13", out  # INTERNAL: only for the server's own faults
    assert own.proc.poll() is None


@FUZZ
@given(junk=st.binary(max_size=200))
def test_random_bytes_after_the_preface(own: ServerProcess, baseline: float,
                                        junk: bytes) -> None:
    with Peer(own.grpc_target, timeout=3, settings=False) as p:
        p.raw(PREFACE + junk)
        p.outcome(1, timeout=0.2)
    assert own.proc.poll() is None


DATATYPES = ["BOOL", "INT8", "INT32", "INT64", "UINT8", "UINT64", "FP16", "FP32", "FP64",
             "BYTES", "STRING", "", "fp32"]
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                        st.floats(allow_nan=False), st.text(max_size=8))
json_data = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=4), max_leaves=12)
shape = st.one_of(st.lists(st.integers(-3, 2**64), max_size=4), json_scalar)
tensor = st.fixed_dictionaries(
    {"name": st.one_of(st.text(max_size=6), st.integers()), "datatype": st.sampled_from(DATATYPES),
     "shape": shape},
    optional={"data": json_data, "parameters": st.one_of(
        st.dictionaries(st.sampled_from(["binary_data_size", "content_type", "x"]),
                        json_scalar, max_size=2), json_scalar)})
infer_body = st.one_of(
    st.fixed_dictionaries({"inputs": st.one_of(st.lists(tensor, max_size=3), json_scalar)},
                          optional={"outputs": json_data, "parameters": json_data,
                                    "id": json_scalar}),
    json_data)


@FUZZ
@given(body=infer_body, binary=st.binary(max_size=64), split=st.integers(-5, 200))
def test_oip_rest_bodies(own: ServerProcess, baseline: float, body: Any, binary: bytes,
                         split: int) -> None:
    raw = json.dumps(body).encode()
    url = f"{own.url}/v2/models/echo/infer"
    r = httpx.post(url, content=raw, timeout=10)
    assert r.status_code < 500, (body, r.text)
    r = httpx.post(url, content=raw + binary, timeout=10,
                   headers={"inference-header-content-length": str(split)})
    assert r.status_code < 500, (body, r.text)
    r = httpx.post(f"{own.url}/v1/models/echo:predict", content=raw, timeout=10)
    assert r.status_code < 500, (body, r.text)


@FUZZ
@given(message=st.binary(max_size=300), method=st.sampled_from(
    ["ModelInfer", "ModelMetadata", "ModelReady", "RepositoryModelLoad", "ServerLive"]))
def test_grpc_messages(own: ServerProcess, baseline: float, message: bytes,
                       method: str) -> None:
    with Peer(own.grpc_target, timeout=5) as p:
        body = b"\0" + struct.pack(">I", len(message)) + message
        p.send(*p.call(1, request_headers(path=f"/inference.GRPCInferenceService/{method}"),
                       body=body))
        out = p.outcome(1)
    assert out.grpc_status not in (None, "13", "2"), out


@pytest.fixture(scope="module")
def feast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    repo: Path = make_repo(tmp_path_factory.mktemp("fuzz-fs") / "fraud", accounts=20)
    s = start(["serve-features", "--repo", str(repo), "--host", "127.0.0.1", "--no-grpc"],
              repo / "server.log")
    yield s
    assert s.stop() == 0, s.log.read_text()[-3000:]


feast_body = st.one_of(
    st.fixed_dictionaries({}, optional={
        "features": st.one_of(st.lists(st.sampled_from([
            "account_features:credit_score", "nope:x", "account_features:", ":", "a:b:c"]),
            max_size=3), st.sampled_from(["fraud_detection_v2", "nope"]), json_scalar),
        "feature_service": json_scalar,
        "entities": st.one_of(st.dictionaries(st.sampled_from(["account_id", "x", ""]),
                                              st.one_of(st.lists(json_scalar, max_size=3),
                                                        json_scalar), max_size=2),
                              json_scalar),
        "full_feature_names": json_scalar}),
    json_data)


@FUZZ
@given(body=feast_body, path=st.sampled_from(
    ["/get-online-features", "/push", "/write-to-online-store"]))
def test_feast_bodies(feast: Server, body: Any, path: str) -> None:
    r = httpx.post(f"{feast.url}{path}", content=json.dumps(body).encode(), timeout=10)
    assert r.status_code < 500, (path, body, r.text)
