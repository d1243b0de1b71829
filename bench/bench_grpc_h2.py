"""OIP gRPC serving benchmark: tureen's own HTTP/2 server (``h2server``) vs ``grpc.aio``.

Workload: scikit-learn LogisticRegression over 10 FP32 features, one row per ModelInfer
(raw_input_contents), one ``tureen serve-model`` process each: the default (``--grpc_server
tureen``) and ``--grpc_server grpcio``. h2load (nghttp2) drives both in the same run: 16
connections, one call per HTTP/2 stream, ``-D`` seconds per round, rounds alternating between
the servers; p50/p99 from h2load's per-request log. One real grpcio call against each server
first checks grpc-status 0 and a non-empty answer (h2load only sees HTTP 200). Prints JSON with
medians over ``--runs`` rounds and the ratio h2 / grpc.aio. The helpers are
``bench_model_server``'s.

    python bench/bench_grpc_h2.py [--duration 5] [--runs 3] [--conns 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_model_server import (
    build_repository,
    check_grpc,
    free_port,
    grpc_body,
    h2load,
    median_of,
    wait_http,
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--conns", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_repository(root / "models")
        body = grpc_body(root / "body.bin", "lr")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        ports: dict[str, tuple[int, int]] = {}
        procs: list[subprocess.Popen[bytes]] = []
        for name, impl in (("grpc_aio", "grpcio"), ("tureen_h2", "tureen")):
            http_port, grpc_port = free_port(), free_port()
            ports[name] = (http_port, grpc_port)
            procs.append(subprocess.Popen(
                [sys.executable, "-c", "from tureen.cli.main import main; main()",
                 "serve-model", "--host", "127.0.0.1", "--http_port", str(http_port),
                 "--grpc_port", str(grpc_port), "--grpc_server", impl,
                 "--model_repository", str(root / "models")], env=env))
        try:
            for http_port, grpc_port in ports.values():
                wait_http(f"http://127.0.0.1:{http_port}/v2/health/ready")
                check_grpc(f"127.0.0.1:{grpc_port}", "lr")
            rounds: dict[str, list[dict[str, float]]] = {name: [] for name in ports}
            for _ in range(args.runs):
                for name, (_, grpc_port) in ports.items():
                    rounds[name].append(h2load(f"127.0.0.1:{grpc_port}", body, args.conns,
                                               args.duration, root))
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)
    result: dict[str, Any] = {
        "workload": f"sklearn LogisticRegression(10 features) ModelInfer, h2load -c{args.conns}"
                    f" -m1, {args.duration:g} s x {args.runs} rounds, medians",
        **{name: median_of(r) for name, r in rounds.items()},
        "rounds": rounds,
    }
    result["ratio_rps_h2_over_aio"] = round(
        result["tureen_h2"]["requests_per_s"] / result["grpc_aio"]["requests_per_s"], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
