"""gRPC load generator for bench_model_server: N concurrent ModelInfer calls for D seconds.

Usage: python model_server_grpc_load.py HOST:PORT MODEL CONNECTIONS SECONDS -> JSON on stdout.
Uses tureen's generated messages (wire-identical to Triton's) with raw_input_contents.
"""

from __future__ import annotations

import asyncio
import sys
import time

import grpc
import numpy as np
import orjson

from tureen.codecs.pb import inference_pb2 as pb


async def main(target: str, model: str, conns: int, seconds: float) -> dict[str, float]:
    x = np.arange(10, dtype=np.float32).reshape(1, 10)
    req = pb.ModelInferRequest(model_name=model)
    req.inputs.add(name="input-0", datatype="FP32", shape=[1, 10])
    req.raw_input_contents.append(x.tobytes())
    payload = req.SerializeToString()
    lat: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as ch:
        call = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                              request_serializer=None, response_deserializer=None)
        await call(payload)
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                try:
                    await call(payload)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                lat.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conns)))
        elapsed = time.perf_counter() - t0
    a = np.array(lat) * 1000
    return {
        "requests_per_s": round(len(lat) / elapsed, 1),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "errors": errors,
    }


if __name__ == "__main__":
    t, m, c, s = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    sys.stdout.write(orjson.dumps(asyncio.run(main(t, m, c, s))).decode() + "\n")
