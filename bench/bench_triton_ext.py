"""Triton extensions benchmark: shared memory vs the socket, streams vs unary calls, and
what a statistics poller costs — each pair measured side by side in one run.

One ``tureen serve-model`` process (one worker, ``--allow_shared_memory``) serves:

- ``identity``: FP32 in, the same tensor out. A 64 MiB tensor round-trips (client sends it,
  gets it back) through (a) the binary tensor extension over the socket (REST, a lean
  ``http.client`` client) and (b) system shared memory (REST request naming an input and an
  output region; the client copies the tensor into its input region and views the output
  region). Median of ``--repeats`` round trips per round.
- ``simple`` (Triton's INT32 add/sub, 16 wide): (c) 16 concurrent unary ``ModelInfer`` calls
  vs (d) 16 concurrent ``ModelStreamInfer`` streams, each sending its next request when the
  previous answer arrived, on one grpc.aio channel, ``--duration`` seconds each;
  (e) h2load ``ModelInfer`` throughput (16 connections) with and without a client fetching
  ``GET /v2/models/stats`` every 100 ms, and the server's CPU time per request on each side
  (``cpu_ratio``: unpolled / polled). Rounds alternate which side runs first.

Rounds alternate the two sides of each pair; medians over ``--runs`` rounds and the ratios
are printed as JSON with the load average before and after.

    python bench/bench_triton_ext.py [--duration 5] [--runs 3] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from bench_model_server import free_port, h2load, wait_http

HERE = Path(__file__).parent
SIMPLE = HERE.parent / "tests" / "e2e" / "triton" / "models" / "simple" / "1" / "model.py"
IDENTITY = '''
from tureen.serving import InferOutput, InferResponse, Model


class Identity(Model):
    def load(self):
        self.ready = True
        return True

    async def predict(self, payload, headers=None):
        i = payload.inputs[0]
        return InferResponse(self.name, [InferOutput("y", i.datatype, i.shape, i.data)])
'''
N = 16 * 1024 * 1024  # FP32 elements: 64 MiB


def build(root: Path) -> Path:
    repo = root / "models"
    (repo / "identity" / "1").mkdir(parents=True)
    (repo / "identity" / "1" / "model.py").write_text(IDENTITY)
    (repo / "simple" / "1").mkdir(parents=True)
    (repo / "simple" / "1" / "model.py").write_text(SIMPLE.read_text())
    return repo


# (a) and (b): 64 MiB round trips


def binary_roundtrip(port: int, x: np.ndarray[Any, Any], repeats: int) -> float:
    head = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [x.size],
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    headers = {"Inference-Header-Content-Length": str(len(head)),
               "Content-Type": "application/octet-stream"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    times = []
    try:
        for _ in range(repeats + 1):
            t = time.perf_counter()
            conn.request("POST", "/v2/models/identity/infer", body=head + x.tobytes(),
                         headers=headers)
            r = conn.getresponse()
            content = r.read()
            y = np.frombuffer(content, np.float32, offset=int(r.headers[
                "inference-header-content-length"]))
            times.append(time.perf_counter() - t)
            assert r.status == 200 and np.array_equal(x, y)
    finally:
        conn.close()
    return statistics.median(times[1:])


def shm_roundtrip(port: int, x: np.ndarray[Any, Any], repeats: int) -> float:
    tag = uuid.uuid4().hex[:8]
    blocks = [shared_memory.SharedMemory(name=f"tureen-bench-{tag}-{k}", create=True,
                                         size=x.nbytes) for k in ("in", "out")]
    base = f"http://127.0.0.1:{port}/v2/systemsharedmemory"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    times = []
    try:
        for name, block in zip(("in", "out"), blocks, strict=True):
            r = httpx.post(f"{base}/region/{tag}-{name}/register",
                           json={"key": "/" + block.name.lstrip("/"), "offset": 0,
                                 "byte_size": x.nbytes})
            assert r.status_code == 200, r.text
        body = json.dumps({
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [x.size], "parameters": {
                "shared_memory_region": f"{tag}-in", "shared_memory_byte_size": x.nbytes}}],
            "outputs": [{"name": "y", "parameters": {
                "shared_memory_region": f"{tag}-out", "shared_memory_byte_size": x.nbytes}}],
        }).encode()
        src = np.ndarray(x.shape, np.float32, blocks[0].buf)
        for _ in range(repeats + 1):
            t = time.perf_counter()
            src[:] = x  # the client puts the tensor in its region (counted)
            conn.request("POST", "/v2/models/identity/infer", body=body,
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            y = np.ndarray(x.shape, np.float32, blocks[1].buf)
            times.append(time.perf_counter() - t)
            assert r.status == 200 and np.array_equal(x, y)
            del y
        del src
        httpx.post(f"{base}/unregister")
    finally:
        conn.close()
        for block in blocks:
            block.close()
            block.unlink()
    return statistics.median(times[1:])


# (c) and (d): unary vs streams, 16 at a time


def simple_request() -> Any:
    from tureen.codecs.pb import inference_pb2 as pb

    req = pb.ModelInferRequest(model_name="simple")
    for name in ("INPUT0", "INPUT1"):
        req.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        req.raw_input_contents.append(np.arange(16, dtype=np.int32).tobytes())
    return req


async def _calls(target: str, seconds: float, conc: int, streaming: bool) -> float:
    import grpc

    from tureen.codecs.pb import inference_pb2 as pb

    req = simple_request()
    count = 0
    async with grpc.aio.insecure_channel(target) as ch:
        unary = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                               request_serializer=pb.ModelInferRequest.SerializeToString,
                               response_deserializer=pb.ModelInferResponse.FromString)
        stream = ch.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer",
                                  request_serializer=pb.ModelInferRequest.SerializeToString,
                                  response_deserializer=pb.ModelStreamInferResponse.FromString)
        await unary(req)
        stop = time.perf_counter() + seconds

        async def caller() -> None:
            nonlocal count
            while time.perf_counter() < stop:
                resp = await unary(req)
                assert resp.raw_output_contents
                count += 1

        async def streamer() -> None:
            nonlocal count
            call = stream()
            while time.perf_counter() < stop:
                await call.write(req)
                resp = await call.read()
                assert not resp.error_message
                count += 1
            await call.done_writing()
            while await call.read() is not grpc.aio.EOF:
                pass

        t = time.perf_counter()
        await asyncio.gather(*((streamer if streaming else caller)() for _ in range(conc)))
        return count / (time.perf_counter() - t)


# (e): statistics poller


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (every thread) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Poller(threading.Thread):
    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.polls = url, 0
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client() as c:
            while not self.halt.wait(0.1):
                assert c.get(self.url).status_code == 200
                self.polls += 1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        repo = build(Path(tmp))
        http_port, grpc_port = free_port(), free_port()
        proc = subprocess.Popen(
            [sys.executable, "-c", "from tureen.cli.main import main; main()", "serve-model",
             "--host", "127.0.0.1", "--http_port", str(http_port), "--grpc_port",
             str(grpc_port), "--model_repository", str(repo), "--allow_shared_memory",
             "--max_request_mb", "80"], env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            wait_http(f"http://127.0.0.1:{http_port}/v2/health/ready")
            target = f"127.0.0.1:{grpc_port}"
            x = np.random.default_rng(1).random(N, dtype=np.float32)
            body = Path(tmp) / "simple.bin"
            msg = simple_request().SerializeToString()
            body.write_bytes(b"\0" + len(msg).to_bytes(4, "big") + msg)
            rounds: dict[str, list[float]] = {k: [] for k in (
                "binary_ms", "shm_ms", "unary_rps", "stream_rps", "h2load_rps",
                "h2load_polled_rps", "h2load_cpu_us", "h2load_polled_cpu_us")}
            polls = 0
            for k in range(args.runs):
                rounds["binary_ms"].append(binary_roundtrip(http_port, x, args.repeats) * 1e3)
                rounds["shm_ms"].append(shm_roundtrip(http_port, x, args.repeats) * 1e3)
                rounds["unary_rps"].append(asyncio.run(
                    _calls(target, args.duration, 16, streaming=False)))
                rounds["stream_rps"].append(asyncio.run(
                    _calls(target, args.duration, 16, streaming=True)))
                for polled in ((False, True) if k % 2 == 0 else (True, False)):
                    poller = Poller(f"http://127.0.0.1:{http_port}/v2/models/stats")
                    if polled:
                        poller.start()
                    cpu = cpu_seconds(proc.pid)
                    run = h2load(target, body, 16, args.duration, Path(tmp))
                    cpu = cpu_seconds(proc.pid) - cpu
                    requests = run["requests_per_s"] * args.duration
                    side = "h2load_polled" if polled else "h2load"
                    rounds[f"{side}_rps"].append(run["requests_per_s"])
                    rounds[f"{side}_cpu_us"].append(cpu / requests * 1e6)
                    if polled:
                        poller.halt.set()
                        poller.join()
                        polls += poller.polls
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    med = {k: round(statistics.median(v), 2) for k, v in rounds.items()}
    print(json.dumps({
        "tensor_MiB": N * 4 // (1024 * 1024),
        "shm_vs_binary": {"binary_roundtrip_ms": med["binary_ms"],
                          "shm_roundtrip_ms": med["shm_ms"],
                          "speedup": round(med["binary_ms"] / med["shm_ms"], 2)},
        "stream_vs_unary_16": {"unary_rps": med["unary_rps"], "stream_rps": med["stream_rps"],
                               "ratio": round(med["stream_rps"] / med["unary_rps"], 3)},
        "stats_polling_100ms": {"rps": med["h2load_rps"], "rps_polled": med["h2load_polled_rps"],
                                "ratio": round(med["h2load_polled_rps"] / med["h2load_rps"], 3),
                                "server_cpu_us_per_request": med["h2load_cpu_us"],
                                "server_cpu_us_per_request_polled": med["h2load_polled_cpu_us"],
                                "cpu_ratio": round(med["h2load_cpu_us"]
                                                   / med["h2load_polled_cpu_us"], 3),
                                "polls": polls},
        "rounds": {k: [round(x, 2) for x in v] for k, v in rounds.items()},
        "runs": args.runs, "duration_s": args.duration, "repeats": args.repeats,
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "cpus": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
