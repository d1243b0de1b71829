"""The gRPC lower bound for bench_model_server: a grpc.aio server (uvloop, like tureen) whose
ModelInfer returns a fixed response without looking at the request.

Usage: python model_server_grpc_bare.py PORT
"""

from __future__ import annotations

import sys
from typing import Any

import grpc
import uvloop

from tureen.codecs.pb import inference_pb2 as pb

RESPONSE: bytes = pb.ModelInferResponse(model_name="bare").SerializeToString()


async def infer(request: bytes, context: Any) -> bytes:
    return RESPONSE


async def main(port: int) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService",
        {"ModelInfer": grpc.unary_unary_rpc_method_handler(infer)}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
