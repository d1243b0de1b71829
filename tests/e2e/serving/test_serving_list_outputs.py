"""A custom model whose ``InferOutput.data`` is a plain Python list, over REST (JSON and the
binary extension) and gRPC (typed contents and ``raw_output_contents``); a list that does not
fit its declared datatype or shape is a generic 500 for the client and a clear log line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp

from tureen.codecs.pb import inference_pb2 as pb

from .conftest import IMPLEMENTATIONS, Server, free_port, wait_ready, write_custom

LISTS = """
import numpy as np
from tureen.serving import InferOutput, InferResponse, Model


class Lists(Model):
    def load(self):
        self.ready = True
        return True

    def predict(self, payload, headers=None):
        return InferResponse(self.name, [
            InferOutput(name="y", datatype="FP32", shape=[2, 2], data=[[1.5, 2.0], [3.0, 4.0]]),
            InferOutput(name="n", datatype="INT64", shape=[3], data=[1, 2, 3]),
            InferOutput(name="s", datatype="BYTES", shape=[2], data=["a", "bc"]),
            InferOutput(name="b", datatype="BOOL", shape=[2], data=[True, False]),
            InferOutput(name="inferred", datatype="INT32", shape=None, data=[[7, 8, 9]]),
            InferOutput(name="wide", datatype="FP32", shape=[2], data=np.array([0.5, 1.5])),
        ])
"""

#: input 0: values the datatype cannot hold; 1: more values than the shape; 2: an array of
#: values the datatype cannot hold; 3: an array of the datatype with fewer elements than its
#: declared shape; 4: a float64 array declared FP32 with more
BAD = """
import numpy as np
from tureen.serving import InferOutput, InferResponse, Model


class Bad(Model):
    def load(self):
        self.ready = True
        return True

    def predict(self, payload, headers=None):
        case = int(payload.inputs[0].data.reshape(-1)[0])
        if case == 0:
            out = InferOutput("y", "INT64", [2], ["secret-value", 2])
        elif case == 1:
            out = InferOutput("y", "FP32", [2], [1.0, 2.0, 3.0])
        elif case == 2:
            out = InferOutput("y", "INT64", [2], np.array([1.5, 2.0]))
        elif case == 3:
            out = InferOutput("y", "FP32", [2, 2], np.zeros(3, dtype=np.float32))
        else:
            out = InferOutput("y", "FP32", [2], np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
        return InferResponse(self.name, [out])
"""

EXPECTED = {
    "y": np.array([[1.5, 2.0], [3.0, 4.0]], dtype=np.float32),
    "n": np.array([1, 2, 3], dtype=np.int64),
    "s": np.array([b"a", b"bc"], dtype=object),
    "b": np.array([True, False]),
    "inferred": np.array([[7, 8, 9]], dtype=np.int32),
    "wide": np.array([0.5, 1.5], dtype=np.float32),  # a float64 array declared FP32
}
X = np.array([[0]], dtype=np.int64)


@pytest.fixture(scope="module", params=list(IMPLEMENTATIONS))
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("list-models")
    write_custom(root, "lists", LISTS)
    write_custom(root, "bad", BAD)
    log = root / "server.log"
    http_port, grpc_port = free_port(), free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from tureen.cli.main import main; main()",
                "serve-model",
                "--host",
                "127.0.0.1",
                "--http_port",
                str(http_port),
                "--grpc_port",
                str(grpc_port),
                "--model_repository",
                str(root),
                *IMPLEMENTATIONS[request.param],
            ],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=out,
        )
    s = Server(proc, http_port, grpc_port, log=log, repo=root)
    try:
        wait_ready(s)
        yield s
    finally:
        assert s.stop() == 0


def model_infer(ch: grpc.aio.Channel) -> Any:
    return ch.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=pb.ModelInferResponse.FromString,
    )


def check(arrays: dict[str, np.ndarray]) -> None:
    """(tritonclient gives JSON BYTES back as str, binary ones as bytes)"""
    arrays["s"] = np.array(
        [v.encode() if isinstance(v, str) else v for v in arrays["s"]], dtype=object
    )
    for name, want in EXPECTED.items():
        assert arrays[name].shape == want.shape, name
        np.testing.assert_array_equal(arrays[name], want)


@pytest.mark.parametrize("binary", [False, True])
def test_rest_encodes_list_outputs(server: Server, binary: bool) -> None:
    client = thttp.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    inp = thttp.InferInput("x", [1, 1], "INT64")
    inp.set_data_from_numpy(X, binary_data=binary)
    outs = [thttp.InferRequestedOutput(n, binary_data=binary) for n in EXPECTED]
    res = client.infer("lists", [inp], outputs=outs)
    check({n: res.as_numpy(n) for n in EXPECTED})
    shapes = {o["name"]: o["shape"] for o in res.get_response()["outputs"]}
    assert shapes["inferred"] == [1, 3]
    if not binary:
        r = httpx.post(
            f"{server.url}/v2/models/lists/infer",
            json={"inputs": [{"name": "x", "datatype": "INT64", "shape": [1, 1], "data": [0]}]},
        )
        assert r.status_code == 200
        data = {o["name"]: o["data"] for o in r.json()["outputs"]}
        assert data["y"] == [1.5, 2.0, 3.0, 4.0] and data["s"] == ["a", "bc"]


def test_grpc_raw_output_contents_of_list_outputs(server: Server) -> None:
    client = tgrpc.InferenceServerClient(server.grpc_target)
    inp = tgrpc.InferInput("x", [1, 1], "INT64")
    inp.set_data_from_numpy(X)
    res = client.infer("lists", [inp])
    assert len(res.get_response().raw_output_contents) == len(EXPECTED)
    check({n: res.as_numpy(n) for n in EXPECTED})


async def test_grpc_typed_contents_of_list_outputs(server: Server) -> None:
    req = pb.ModelInferRequest(model_name="lists")
    req.inputs.add(name="x", datatype="INT64", shape=[1, 1]).contents.int64_contents.append(0)
    req.parameters["typed_output_contents"].bool_param = True
    async with grpc.aio.insecure_channel(server.grpc_target) as ch:
        infer = model_infer(ch)
        resp = await infer(req)
    assert not resp.raw_output_contents
    outs = {o.name: o for o in resp.outputs}
    assert list(outs["y"].contents.fp32_contents) == [1.5, 2.0, 3.0, 4.0]
    assert list(outs["y"].shape) == [2, 2]
    assert list(outs["n"].contents.int64_contents) == [1, 2, 3]
    assert list(outs["s"].contents.bytes_contents) == [b"a", b"bc"]
    assert list(outs["b"].contents.bool_contents) == [True, False]
    assert list(outs["inferred"].shape) == [1, 3]
    assert list(outs["inferred"].contents.int_contents) == [7, 8, 9]


@pytest.mark.parametrize("case", [0, 1, 2])
async def test_a_list_that_does_not_fit_is_a_generic_500(server: Server, case: int) -> None:
    r = httpx.post(
        f"{server.url}/v2/models/bad/infer",
        json={"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [case]}]},
    )
    assert r.status_code == 500
    assert "secret-value" not in r.text and "INT64" not in r.text and "FP32" not in r.text
    assert "request id" in r.json()["error"]
    req = pb.ModelInferRequest(model_name="bad")
    req.inputs.add(name="x", datatype="INT64", shape=[1]).contents.int64_contents.append(case)
    async with grpc.aio.insecure_channel(server.grpc_target) as ch:
        infer = model_infer(ch)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await infer(req)
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert "secret-value" not in (e.value.details() or "")
    log = server.log.read_text() if server.log else ""
    said = ["holds string values", "holds 3 elements", "holds 1.5"][case]
    last = log[log.rfind("bad:1]: internal error") :]  # the line names the model, then why
    assert "model's output 'y'" in last and said in last, log[-3000:]


#: what the log says of cases 3 and 4 of BAD: the output, its declared shape, the data's size
SHAPE_MISMATCH = {
    3: "declared shape [2, 2] (4 elements) but its data holds 3",
    4: "declared shape [2] (2 elements) but its data holds 5",
}


@pytest.mark.parametrize("case", list(SHAPE_MISMATCH))
async def test_an_array_that_does_not_fit_its_shape_is_a_generic_500(
    server: Server, case: int
) -> None:
    """Checked before any encoding: REST JSON and binary, gRPC raw and typed contents."""
    for binary in (False, True):
        body: dict[str, Any] = {
            "inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [case]}]
        }
        if binary:
            body["parameters"] = {"binary_data_output": True}
        r = httpx.post(f"{server.url}/v2/models/bad/infer", json=body)
        assert r.status_code == 500, r.text
        assert "[2" not in r.text and "FP32" not in r.text
        assert "request id" in r.json()["error"]
    for typed in (False, True):
        req = pb.ModelInferRequest(model_name="bad")
        req.inputs.add(name="x", datatype="INT64", shape=[1]).contents.int64_contents.append(case)
        if typed:
            req.parameters["typed_output_contents"].bool_param = True
        async with grpc.aio.insecure_channel(server.grpc_target) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await model_infer(ch)(req)
        assert e.value.code() == grpc.StatusCode.INTERNAL
        assert "request id" in (e.value.details() or "")
        assert "FP32" not in (e.value.details() or "")
    log = server.log.read_text() if server.log else ""
    last = log[log.rfind("bad:1]: internal error") :]
    assert "model's output 'y'" in last and SHAPE_MISMATCH[case] in last, log[-3000:]
