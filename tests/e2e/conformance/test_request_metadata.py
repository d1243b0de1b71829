"""Request ids and metadata on both gRPC servers and both HTTP/1.1 servers (real processes):
issue 11 #15 — an invalid ``x-request-id`` is replaced before it reaches the log, the
response headers or the trailers (it could forge log lines) — and RFC 9113's "repeated
gRPC metadata keys are kept"."""

from __future__ import annotations

import json
import re

import grpc
import httpx
from tests.e2e.server_process import ServerProcess

from tureen.codecs.oip_proto import decode_response
from tureen.codecs.pb import inference_pb2 as pb

#: legal in an HTTP field value (so both gRPC stacks deliver it), not a valid request id
FORGED = "0 INFO tureen.serving: forged-line"
VALID = re.compile(r"[A-Za-z0-9._~:/+=@-]{1,128}")


def model_infer(target: str, metadata: list[tuple[str, str]], boom: bool = False,
                ) -> tuple[grpc.StatusCode, dict[str, str], str, pb.ModelInferResponse | None]:
    req = pb.ModelInferRequest(model_name="seer")
    inp = req.inputs.add(name="boom" if boom else "x", datatype="INT32", shape=[1])
    inp.contents.int_contents.append(1)
    with grpc.insecure_channel(target) as ch:
        call = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                              request_serializer=pb.ModelInferRequest.SerializeToString,
                              response_deserializer=pb.ModelInferResponse.FromString)
        try:
            resp, c = call.with_call(req, metadata=metadata, timeout=10)
        except grpc.RpcError as exc:
            return exc.code(), dict(exc.trailing_metadata() or ()), exc.details() or "", None
        return c.code(), dict(c.trailing_metadata() or ()), "", resp


def test_15_an_invalid_grpc_request_id_never_reaches_log_or_trailers(h2: ServerProcess,
                                                                   ) -> None:
    code, trailers, details, _ = model_infer(h2.grpc_target, [("x-request-id", FORGED)],
                                             boom=True)
    assert code == grpc.StatusCode.INTERNAL
    rid = trailers["x-request-id"]
    assert rid != FORGED and VALID.fullmatch(rid), trailers
    assert rid in details  # "the server log has the details under request id ..."
    code, trailers, _, _ = model_infer(h2.grpc_target, [("x-request-id", "req-15.ok")],
                                       boom=True)
    assert code == grpc.StatusCode.INTERNAL and trailers["x-request-id"] == "req-15.ok"
    assert h2.log is not None
    log = h2.log.read_text()
    assert rid in log and "req-15.ok" in log
    assert "forged-line" not in log


def test_15_an_invalid_rest_request_id_never_reaches_log_or_headers(h2: ServerProcess) -> None:
    body = {"inputs": [{"name": "boom", "datatype": "INT32", "shape": [1], "data": [1]}]}
    r = httpx.post(f"{h2.url}/v2/models/seer/infer", json=body, timeout=10,
                   headers={"x-request-id": FORGED.replace("forged", "rest-forged")})
    assert r.status_code == 500
    rid = r.headers["x-request-id"]
    assert "forged" not in rid and VALID.fullmatch(rid)
    assert h2.log is not None and rid in h2.log.read_text()
    assert "rest-forged" not in h2.log.read_text()


def test_repeated_grpc_metadata_keys_are_kept(h2: ServerProcess) -> None:
    metadata = [("x-tenant", "acme"), ("x-tenant", "beta"), ("x-one", "1")]
    code, _, details, resp = model_infer(h2.grpc_target, metadata)
    assert code == grpc.StatusCode.OK and resp is not None, details
    (out,) = decode_response(resp).outputs  # raw_output_contents, as Triton replies
    seen = dict(json.loads(out.data.reshape(-1)[0]))
    assert seen["x-tenant"] == "acme, beta" and seen["x-one"] == "1", seen
