"""OIP gRPC serving benchmark: tureen's own HTTP/2 server (``h2server``) vs ``grpc.aio``.

Workload: scikit-learn LogisticRegression over 10 FP32 features, one row per ModelInfer
(raw_input_contents), one server process each. h2load (nghttp2) drives both in the same run:
16 connections, one call per HTTP/2 stream, ``-D`` seconds per round, rounds alternating
between the servers. p50/p99 come from h2load's per-request ``--log-file``. One real grpcio
call against each server first checks grpc-status 0 and equal outputs (h2load only sees
HTTP 200). Prints JSON with medians over ``--runs`` rounds and the ratio h2 / grpc.aio.

    python bench/bench_grpc_h2.py [--duration 5] [--runs 3] [--conns 16]

The grpc.aio side is ``tureen serve-model`` as it stands; the h2 side is this file run with
``--serve PORT REPO`` (the same DataPlane and repository, ``start_h2_server``, uvloop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROW = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
PATH = "/inference.GRPCInferenceService/ModelInfer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_repository(root: Path) -> None:
    import joblib
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 10)).astype(np.float32)
    y = (x @ np.arange(10) > 0).astype(np.int64)
    (root / "lr" / "1").mkdir(parents=True)
    joblib.dump(LogisticRegression().fit(x, y), root / "lr" / "1" / "model.joblib")


def request_bytes() -> bytes:
    from tureen.transports.grpc import inference_pb2 as pb

    req = pb.ModelInferRequest(model_name="lr")
    req.inputs.add(name="input-0", datatype="FP32", shape=[1, 10])
    req.raw_input_contents.append(np.asarray([ROW], dtype=np.float32).tobytes())
    return req.SerializeToString()


def check(port: int) -> list[int]:
    """One call through grpcio: grpc-status must be OK; returns the predicted class."""
    import grpc

    from tureen.transports.grpc import inference_pb2 as pb

    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = ch.unary_unary(PATH, request_serializer=None,
                              response_deserializer=pb.ModelInferResponse.FromString)
        resp, info = call.with_call(request_bytes(), timeout=10)
    assert info.code() == grpc.StatusCode.OK, info.code()
    return [int(v) for v in np.frombuffer(resp.raw_output_contents[0], dtype=np.int64)]


def wait_grpc(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on :{port} exited with {proc.returncode}")
        try:
            check(port)
            return
        except Exception:
            time.sleep(0.3)
    raise RuntimeError(f"server on :{port} did not serve ModelInfer in {timeout} s")


def h2load(port: int, body: Path, conns: int, seconds: float, log: Path) -> dict[str, float]:
    out = subprocess.run(
        ["h2load", "-t1", f"-c{conns}", "-m1", "-D", str(int(seconds)), "-d", str(body),
         "-H", "content-type: application/grpc", "-H", "te: trailers", f"--log-file={log}",
         f"http://127.0.0.1:{port}{PATH}"],
        capture_output=True, text=True, check=True,
    ).stdout
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored", out)
    rps = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
    assert m and rps, out
    lat = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines() if line)
    log.unlink()  # h2load appends to an existing log file
    done = len(lat)
    return {
        "requests_per_s": float(rps.group(1)),
        "p50_ms": lat[done // 2] / 1000.0,
        "p99_ms": lat[min(done - 1, int(done * 0.99))] / 1000.0,
        "failed": int(m.group(4)) + int(m.group(5)),
    }


def median(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in rounds), 3) for k in rounds[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--conns", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_repository(root / "models")
        msg = request_bytes()
        body = root / "body.bin"
        body.write_bytes(b"\x00" + len(msg).to_bytes(4, "big") + msg)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        aio_port, h2_port = free_port(), free_port()
        procs = {
            "grpc_aio": subprocess.Popen(
                [sys.executable, "-c", "from tureen.cli.main import main; main()",
                 "serve-model", "--host", "127.0.0.1", "--http_port", str(free_port()),
                 "--grpc_port", str(aio_port), "--model_repository", str(root / "models"),
                 "--log_level", "warning"], env=env),
            "tureen_h2": subprocess.Popen(
                [sys.executable, __file__, "--serve", str(h2_port), str(root / "models")],
                env=env),
        }
        ports = {"grpc_aio": aio_port, "tureen_h2": h2_port}
        try:
            for name, port in ports.items():
                wait_grpc(port, procs[name])
            answers = {name: check(port) for name, port in ports.items()}
            assert answers["grpc_aio"] == answers["tureen_h2"], answers
            rounds: dict[str, list[dict[str, float]]] = {name: [] for name in ports}
            for _ in range(args.runs):
                for name, port in ports.items():
                    rounds[name].append(h2load(port, body, args.conns, args.duration,
                                               root / f"{name}.tsv"))
        finally:
            for p in procs.values():
                p.send_signal(signal.SIGTERM)
            for p in procs.values():
                p.wait(timeout=30)
    result: dict[str, Any] = {
        "workload": f"sklearn LogisticRegression(10 features) ModelInfer, h2load -c{args.conns}"
                    f" -m1, {args.duration:g} s x {args.runs} rounds, medians",
        **{name: median(r) for name, r in rounds.items()},
        "rounds": rounds,
    }
    result["ratio_rps_h2_over_aio"] = round(
        result["tureen_h2"]["requests_per_s"] / result["grpc_aio"]["requests_per_s"], 2)
    print(json.dumps(result, indent=2))


def serve(port: int, repo: str) -> None:
    import uvloop

    from tureen.serving.dataplane import DataPlane
    from tureen.serving.repository import ModelRepository
    from tureen.transports.grpc.h2server import start_h2_server

    async def run() -> None:
        dp = DataPlane(ModelRepository(repo))
        await dp.repository.load_all()
        server = await start_h2_server(dp, "127.0.0.1", port, max_message_bytes=256 << 20)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop(5.0)
        dp.close()

    uvloop.run(run())


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), sys.argv[3])
    else:
        main()
