"""Per-call cost of tureen's gRPC server (OIP ``ModelInfer``), independent of machine noise.

The server is built as ``tureen serve-model`` builds it (``apply_security`` + ``ModelServer``,
one worker) over bench_model_server.py's model repository, in this process; the calls go to
one ``GrpcConnection`` with a fake transport (no socket, no client process): a connection
preface and SETTINGS, then ``--calls`` unary ``ModelInfer`` calls to ``lr`` (scikit-learn
LogisticRegression, one row of 10 FP32, bench_model_server.grpc_body) one at a time, each a
HEADERS frame (tureen's own HPACK encoder: static indexes and plain literals, no Huffman,
nothing indexed, so every call's header block is decoded in full) and one DATA frame; a call
is over when its stream is closed and the answer written. ``--concurrent 16`` sends 16 calls
in one read and waits for all 16 answers, as 16 connections' calls arrive at once under load:
then ``lr``'s adaptive batcher runs them as one batch. The client opens its connection window
to 2**30 - 1 at the start, as h2load does (the answers never wait for credit).
``--auth token`` serves with API tokens (a feature repo whose registry holds a token made
with ``Tokens.create``) and sends ``authorization: Bearer <token>`` on every call;
``--auth off`` sends none.

    python bench/grpc_call_cost.py [--auth off|token] [--calls N]             # wall µs / call
    python bench/grpc_call_cost.py [--auth off|token] [--calls N] --callgrind  # instructions
    python bench/grpc_call_cost.py --concurrent 16 --callgrind      # 16 at a time, batched

``--callgrind`` runs this script under ``valgrind --tool=callgrind``, counting only while the
measured calls run (zeroed after ``--warmup`` calls, dumped after the last; as
fs_request_cost.py), every thread included. ``lr`` gets ``inline_budget_ms: 1000`` so its
predict always runs on the event loop (at full speed it does anyway: ~0.1 ms) rather than in
a worker thread when callgrind's slow-down would push it over the default 1 ms. The registry
is not re-read during the measured calls. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

METHOD = "/inference.GRPCInferenceService/ModelInfer"


def fixtures(root: Path, auth: str) -> tuple[Path, Path | None, str | None]:
    """The model repository, and with ``auth == "token"`` a feature repo serving API tokens
    and a token its registry holds."""
    from bench_model_server import build_repository

    models = root / "models"
    build_repository(models)
    (models / "lr" / "model-settings.json").write_text('{"inline_budget_ms": 1000}')
    if auth == "off":
        return models, None, None
    from tureen.auth.tokens import Tokens
    from tureen.examples.fraud import create_repo
    from tureen.store import FeatureStore

    repo = create_repo(root / "repo", accounts=20, days=2)
    with FeatureStore(repo) as fs:
        fs.apply()
    with open(repo / "tureen.yaml", "a") as f:
        f.write("serving:\n  auth:\n    type: [token]\n")
    with FeatureStore(repo) as fs:
        token, _ = Tokens(fs.registry).create(["admin"], name="bench")
    return models, repo, token


def call_frames(stream_id: int, message: bytes, token: str | None) -> bytes:
    """One unary call as a client sends it: HEADERS, then the message in a DATA frame."""
    from tureen.transports.grpc import h2frames as f
    from tureen.transports.grpc.hpack import Encoder

    headers = [(":method", "POST"), (":scheme", "http"), (":path", METHOD),
               (":authority", "127.0.0.1:8081"), ("content-type", "application/grpc"),
               ("te", "trailers"), ("user-agent", "grpc-python/1.0")]
    if token is not None:
        headers.append(("authorization", f"Bearer {token}"))
    block = Encoder().encode(headers)
    return b"".join(f.header_frames(stream_id, block, False, 16384)) + f.frame(
        f.DATA, f.END_STREAM, stream_id, message)


class Transport(asyncio.Transport):
    """What the connection writes, kept; a peer address; nothing else."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.writes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data
        self.writes += 1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5555) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def statuses(out: bytes) -> dict[str, int]:
    """grpc-status of every answer in what the server wrote (its frames after the preface)."""
    from tureen.transports.grpc import h2frames as f
    from tureen.transports.grpc.hpack import Decoder

    dec, pos = Decoder(), 0
    seen: dict[str, int] = {}
    while pos + 9 <= len(out):
        size = int.from_bytes(out[pos:pos + 3], "big")
        kind, payload = out[pos + 3], out[pos + 9:pos + 9 + size]
        pos += 9 + size
        if kind == f.HEADERS:
            for name, value in dec.decode(payload):
                if name == "grpc-status":
                    seen[value] = seen.get(value, 0) + 1
    return seen


async def run(root: Path, auth: str, warmup: int, calls: int, concurrent: int = 1
              ) -> dict[str, Any]:
    from bench_model_server import grpc_body

    from tureen.cli.security import apply_security
    from tureen.config import serving_settings
    from tureen.serving.server import ModelServer
    from tureen.store import FeatureStore
    from tureen.transports.grpc import h2frames as f
    from tureen.transports.grpc.h2grpc import GrpcConnection

    models, repo, token = fixtures(root, auth)
    message = grpc_body(root / "infer.bin", "lr").read_bytes()
    store = FeatureStore(repo) if repo is not None else None
    base, security = apply_security(
        store.config.serving if store else serving_settings(),
        auth_types=("token",) if store else (), tls_cert=None, tls_key=None,
        tls_client_ca=None, insecure=False, store=store, host=None)
    server = ModelServer(settings=base, model_repository=models, security=security,
                         http_port=0, grpc_port=0, workers=1, log_level="warning")
    serving = asyncio.get_running_loop().create_task(
        server.serve(install_signal_handlers=False))
    while server.dataplane is None or not server.dataplane.ready():
        await asyncio.sleep(0.05)
    grpc = next(t for t in server.transports if t.kind == "grpc")
    conn = GrpcConnection(grpc._h2.service)  # type: ignore[attr-defined]
    transport = Transport()
    conn.connection_made(transport)
    # a connection window as h2load's (2**30 - 1): the answers' DATA never wait for credit
    conn.data_received(f.PREFACE + f.settings({}) + f.frame(f.SETTINGS, f.ACK, 0)
                       + f.window_update(0, 2**30 - 1 - f.DEFAULT_WINDOW))
    ids = iter(range(1, 2**31, 2))

    def frames(n: int) -> list[bytes]:
        """``n`` calls, ``concurrent`` to a round (one ``data_received``)."""
        calls = [call_frames(next(ids), message, token) for _ in range(n)]
        return [b"".join(calls[i:i + concurrent]) for i in range(0, n, concurrent)]

    async def drive(todo: list[bytes]) -> None:
        for data in todo:
            n0 = transport.writes
            conn.data_received(data)
            while conn.streams or transport.writes == n0:
                await asyncio.sleep(0)

    await drive(frames(warmup))
    measured = frames(calls)
    if store is not None:  # re-read every TTL of wall time: a cost per second, not per call
        store.registry.cache_ttl_seconds = float("inf")
    start = len(transport.out)
    os.getppid()  # callgrind zeroes its counts here (--zero-before=posix_getppid)
    t0 = time.perf_counter()
    await drive(measured)
    wall = time.perf_counter() - t0
    os.getpgrp()  # and dumps them here (--dump-before=posix_getpgrp)
    out = bytes(transport.out[start:])
    conn.connection_lost(None)  # or stopping waits for it to drain
    server.stop()
    await serving
    if store is not None:
        store.close()
    return {"auth": auth, "calls": calls, "concurrent": concurrent,
            "grpc_status": statuses(out),
            "bytes_out_per_call": round(len(out) / calls),
            "wall_us_per_call": round(wall / calls * 1e6, 1)}


def callgrind(auth: str, warmup: int, calls: int, concurrent: int, keep: Path | None
              ) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tureen-cg-") as tmp:
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             "--zero-before=os_getppid", "--dump-before=os_getpgrp", "--compress-strings=no",
             sys.executable, __file__, "--auth", auth, "--warmup", str(warmup),
             "--calls", str(calls), "--concurrent", str(concurrent)],
            env={**os.environ, "PYTHONHASHSEED": "0"}, check=True, capture_output=True)
        dumped = next(Path(tmp).glob("callgrind.out.*"))
        summary = re.search(r"^totals: (\d+)", dumped.read_text(), re.M)
        assert summary is not None
        if keep is not None:
            keep.write_bytes(dumped.read_bytes())
    inner = json.loads(proc.stdout)
    return {"auth": auth, "calls": calls, "warmup": warmup, "concurrent": concurrent,
            "grpc_status": inner["grpc_status"],
            "instructions_per_call": round(int(summary.group(1)) / calls)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--auth", choices=("off", "token"), default="off")
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--concurrent", type=int, default=1,
                    help="calls sent together (in one read), as 16 connections' arrive")
    ap.add_argument("--callgrind", action="store_true", help="instructions per call")
    ap.add_argument("--keep", type=Path, help="with --callgrind: keep the profile here")
    args = ap.parse_args()
    if args.callgrind:
        result = callgrind(args.auth, args.warmup, min(args.calls, 2000), args.concurrent,
                           args.keep)
    else:
        root = Path(tempfile.mkdtemp(prefix="tureen-grpc-cost-"))
        try:
            import uvloop

            result = uvloop.run(run(root, args.auth, args.warmup, args.calls,
                                       args.concurrent))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
