"""Per-request cost of the feature server, independent of machine noise.

The server is built as ``tureen serve-features`` builds it (``feature_routes`` +
``ModelServer`` with the security of the command's defaults: auth off) and runs in this
process on uvloop with tureen's HTTP/1.1 server; a client on the same loop and one keep-alive
connection sends bench_feature_server.py's request (one random entity x 10 Float32 features,
Feast's request JSON) one after another, over a real loopback socket.

    python bench/fs_request_cost.py --prepare DIR        # the bench repo (10,000 entities)
    python bench/fs_request_cost.py --repo DIR           # wall µs and Python calls / request
    python bench/fs_request_cost.py --repo DIR --callgrind   # instructions / request
    python bench/fs_request_cost.py --repo DIR --callgrind --auth token   # the same, token auth

``--auth token`` serves with token auth (``--auth token`` of ``serve-features``): a token with
the ``reader`` role is created in the repo's registry and every request carries it as
``Authorization: Bearer``, as bench_auth.py's wrk does.

``--callgrind`` runs this script under ``valgrind --tool=callgrind``, counting only while
the ``--requests`` (at most 2,000) run, after ``--warmup`` requests: the instructions of a
request, client side included (one send, one recv, finding the end of the answer),
start-up and warm-up excluded (``--keep FILE`` keeps the profile for callgrind_annotate).
The registry is not re-read during that run (it is every 2 s when serving: a cost per second,
not per request, that callgrind's slow-down would spread over far fewer requests), nor, with
``--auth token``, are the tokens' last-used times written (once a minute when serving). The count
repeats within ~0.1% whatever else runs on the machine. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

FEATURES = [f"account_stats:f{i}" for i in range(10)]
ENTITIES = 10_000


def request_bytes(rng: random.Random, port: int, token: str | None = None) -> bytes:
    entity = 1001 + rng.randrange(ENTITIES)
    feats = ", ".join(f'"{f}"' for f in FEATURES)
    body = (
        '{"features": [' + feats + '], "entities": {"account_id": [' + str(entity) + "]}}"
    ).encode()
    auth = b"Authorization: Bearer %s\r\n" % token.encode() if token else b""
    return (
        b"POST /get-online-features HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
        b"Content-Type: application/json\r\n%sContent-Length: %d\r\n\r\n"
        % (port, auth, len(body))
        + body
    )


class Client(asyncio.Protocol):
    """Sends ``count`` requests one after another; ``done`` resolves after the last answer."""

    def __init__(self, requests: list[bytes], done: asyncio.Future[None]) -> None:
        self.requests = requests
        self.done = done
        self.next = 0
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.statuses: dict[bytes, int] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        if self.next == len(self.requests):
            self.done.set_result(None)
            return
        assert self.transport is not None
        self.transport.write(self.requests[self.next])
        self.next += 1

    def data_received(self, data: bytes) -> None:
        buf = self.buf = self.buf + data if self.buf else data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        at = buf.find(b"\r\ncontent-length: ", 0, end)  # the server writes it lowercase
        size = end + 4 + (int(buf[at + 18 : buf.index(b"\r\n", at + 18)]) if at >= 0 else 0)
        if len(buf) < size:
            return
        status = buf[9:12]
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.buf = buf[size:]
        self._send()


async def run(
    repo: Path, warmup: int, count: int, profile: bool, auth: str | None = None
) -> dict[str, Any]:
    from tureen.cli.security import apply_security
    from tureen.feature_server import feature_service_models
    from tureen.serving.server import ModelServer
    from tureen.store import FeatureStore
    from tureen.transports.rest.feast import feature_routes

    store = FeatureStore(repo)
    if os.environ.get("FS_COST_FROZEN_REGISTRY"):
        # re-read every 2 s of wall time: under callgrind's slow-down that would be once per
        # few hundred requests instead of once per ~12,000, and counts would follow the load
        store.registry.cache_ttl_seconds = float("inf")
    token = None
    if auth == "token":
        from tureen.auth.tokens import Tokens

        token, _ = Tokens(store.registry).create(["reader"])
    cfg, sec = apply_security(
        store.config.serving,
        auth_types=(auth,) if auth else (),
        tls_cert=None,
        tls_key=None,
        tls_client_ca=None,
        insecure=False,
        store=store,
        host="127.0.0.1",
    )
    if os.environ.get("FS_COST_FROZEN_REGISTRY") and sec.authenticator is not None:
        tokens = sec.authenticator.tokens
        if tokens is not None:  # the last-used times are written once a minute: the same
            tokens.flush_seconds = float("inf")  # cost per second, not per request
    server = ModelServer(
        settings=cfg,
        extra_routes=feature_routes(store, None),
        security=sec,
        http_port=0,
        enable_grpc=False,
        workers=1,
        log_level="warning",
    )
    loop = asyncio.get_running_loop()
    serving = loop.create_task(
        server.serve(feature_service_models(store), install_signal_handlers=False)
    )
    while not any(t.kind == "http" and getattr(t, "port", 0) for t in server.transports):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    port = server.http_port
    rng = random.Random(7)

    async def send(reqs: list[bytes]) -> dict[bytes, int]:
        done: asyncio.Future[None] = loop.create_future()
        transport, client = await loop.create_connection(
            lambda: Client(reqs, done), "127.0.0.1", port
        )
        await done
        transport.close()
        return client.statuses

    await send([request_bytes(rng, port, token) for _ in range(warmup)])
    measured = [request_bytes(rng, port, token) for _ in range(count)]
    prof = cProfile.Profile() if profile else None
    os.getppid()  # callgrind zeroes its counts here (--zero-before=posix_getppid)
    t0 = time.perf_counter()
    if prof is not None:
        prof.enable()
    statuses = await send(measured)
    if prof is not None:
        prof.disable()
    wall = time.perf_counter() - t0
    os.getpgrp()  # and dumps them here (--dump-before=posix_getpgrp)
    server.stop()
    await serving
    store.close()
    out: dict[str, Any] = {
        "requests": count,
        "statuses": {k.decode(): v for k, v in statuses.items()},
    }
    if prof is None:
        out["wall_us_per_request"] = round(wall / count * 1e6, 1)
    else:
        stats = pstats.Stats(prof)
        rows = stats.stats  # type: ignore[attr-defined]
        py = sum(v[0] for k, v in rows.items() if k[0] != "~")
        c = sum(v[0] for k, v in rows.items() if k[0] == "~")
        out["python_calls_per_request"] = round(py / count, 1)
        out["c_calls_per_request"] = round(c / count, 1)
        top = sorted(rows.items(), key=lambda kv: -kv[1][0])[:60]
        if os.environ.get("FS_COST_CALLERS"):
            stats.sort_stats("ncalls").print_callers(os.environ["FS_COST_CALLERS"])
        out["calls"] = [
            f"{v[0] / count:6.2f} {Path(k[0]).name}:{k[1]} {k[2]}" for k, v in top if v[0] >= count
        ]
    return out


def callgrind(
    repo: Path, warmup: int, count: int, keep: Path | None, auth: str | None = None
) -> dict[str, Any]:
    """Instructions of the measured requests only: callgrind zeroes its counters when the
    warm-up is over and dumps them when the last answer is in."""
    with tempfile.TemporaryDirectory(prefix="tureen-cg-") as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {**os.environ, "PYTHONHASHSEED": "0", "FS_COST_FROZEN_REGISTRY": "1"}
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                "--zero-before=os_getppid",
                "--dump-before=os_getpgrp",
                "--compress-strings=no",
                sys.executable,
                __file__,
                "--repo",
                str(repo),
                "--warmup",
                str(warmup),
                "--requests",
                str(count),
                *(["--auth", auth] if auth else []),
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        dumped = next(Path(tmp).glob("callgrind.out.*"))
        summary = re.search(r"^totals: (\d+)", dumped.read_text(), re.M)
        assert summary is not None
        if keep is not None:
            keep.write_bytes(dumped.read_bytes())
    return {
        "instructions_per_request": round(int(summary.group(1)) / count),
        "requests": count,
        "warmup": warmup,
        "auth": auth or "off",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prepare", type=Path, help="build the bench repo into this folder")
    ap.add_argument("--repo", type=Path)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--profile", action="store_true", help="Python calls per request")
    ap.add_argument("--callgrind", action="store_true", help="instructions per request")
    ap.add_argument("--keep", type=Path, help="with --callgrind: keep the profile here")
    ap.add_argument("--auth", choices=["token"], help="serve with token auth (default: off)")
    args = ap.parse_args()
    if args.prepare is not None:
        from bench_feature_server import tureen_repo

        args.prepare.mkdir(parents=True, exist_ok=True)
        print(tureen_repo(args.prepare))
        return
    if args.repo is None:
        sys.exit("--repo DIR (make one with --prepare DIR)")
    if args.callgrind:
        print(
            json.dumps(
                callgrind(args.repo, args.warmup, min(args.requests, 2000), args.keep, args.auth),
                indent=2,
            )
        )
        return
    import uvloop

    print(
        json.dumps(
            uvloop.run(run(args.repo, args.warmup, args.requests, args.profile, args.auth)),
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
