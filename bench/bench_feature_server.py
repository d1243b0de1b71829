"""Feature server benchmark: ``tureen serve-features`` vs Feast 0.67's ``feast serve``.

Workload: one entity (``account_id``, Int64) and one view of ten Float32 features, 10,000
entities materialized into SQLite; each request asks for one random entity x 10 features
with Feast's request JSON (the same body for both servers). One worker each; wrk at 1 and
16 connections; all servers run at once and are measured back to back in each run
(interleaved, so background load hits them alike); medians over ``--runs``. Feast runs from
its own venv (the one of ``TUREEN_FEAST_PYTHON``, else ``/work/peers/feast``); when it is
missing, its numbers measured earlier on this machine are quoted instead. The bare lower
bound is a Starlette handler returning a canned response.

    python bench/bench_feature_server.py [--duration 5] [--runs 3] [--no-feast] [--curve]

``--curve`` measures the batch curve instead (Feast's benchmark shapes): p50/p99 at one
connection for 1/10/50/100 entities x 10 features and 1 entity x 50 / 250 features (5 and 25
views of 10 features), tureen and ``feast serve`` interleaved in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

# Feast's own venv: TUREEN_FEAST_PYTHON (as the tests use it) or /work/peers/feast
FEAST_BIN = Path(os.environ.get("TUREEN_FEAST_PYTHON", "/work/peers/feast/bin/python")).parent
FEAST_REFERENCE = {"rps_c1": 250.0, "p50_ms_c1": 3.7, "p99_ms_c1": 664.0, "rps_c16": 200.0,
                   "p99_ms_c16": 1400.0}
TARGETS = {"speedup_vs_feast_c16": 20.0, "p99_ms_c16": 5.0}
ENTITIES = 10_000
FEATURES = [f"f{i}" for i in range(10)]
CLI = [sys.executable, "-c", "from tureen.cli.main import main; main()"]

VIEWS = 25  # view k holds features f{10k}..f{10k+9}; view 0 is "account_stats"
TUREEN_FEATURES = textwrap.dedent('''
    from datetime import timedelta
    from tureen import Entity, FeatureView, Field, FileSource, Float32, Int64

    account = Entity(name="account", join_keys=["account_id"], dtype=Int64)
    for k in range(VIEWS):
        name = "account_stats" if k == 0 else f"account_stats_{k}"
        globals()[name] = FeatureView(
            name=name, entities=[account],
            schema=[Field(f"f{10 * k + i}", Float32) for i in range(10)],
            source=FileSource(path="data/account_stats.parquet",
                              timestamp_field="event_timestamp"),
            ttl=timedelta(days=3650),
        )
''').replace("VIEWS", str(VIEWS))

FEAST_FEATURES = textwrap.dedent('''
    from datetime import timedelta
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Float32

    account = Entity(name="account", join_keys=["account_id"], value_type=ValueType.INT64)
    source = FileSource(path="data/account_stats.parquet", timestamp_field="event_timestamp")
    for k in range(VIEWS):
        name = "account_stats" if k == 0 else f"account_stats_{k}"
        globals()[name] = FeatureView(
            name=name, entities=[account], ttl=timedelta(days=3650),
            schema=[Field(name=f"f{10 * k + i}", dtype=Float32) for i in range(10)],
            source=source, online=True,
        )
''').replace("VIEWS", str(VIEWS))

FEAST_YAML = textwrap.dedent('''
    project: bench
    registry: data/registry.db
    provider: local
    online_store:
      type: sqlite
      path: data/online.db
    entity_key_serialization_version: 3
''')

BARE = textwrap.dedent('''
    import sys, uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route
    BODY = open(sys.argv[2], "rb").read()
    async def handle(request):
        await request.body()
        return Response(BODY, media_type="application/json")
    app = Starlette(routes=[Route("/get-online-features", handle, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http="httptools",
                loop="uvloop", access_log=False, log_level="warning")
''')

LUA = '''
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
math.randomseed(7)
request = function()
  local id = 1001 + math.random(0, {n} - 1)
  return wrk.format(nil, nil, nil, {body})
end
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_data(data: Path) -> None:
    rng = np.random.default_rng(7)
    data.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"account_id": np.arange(1001, 1001 + ENTITIES, dtype=np.int64)})
    frame = frame.assign(**{f"f{i}": rng.random(ENTITIES).astype(np.float32)
                            for i in range(10 * VIEWS)})
    frame["event_timestamp"] = pd.Timestamp(datetime.now(UTC) - timedelta(days=1))
    frame.to_parquet(data / "account_stats.parquet", index=False)


def tureen_repo(root: Path) -> Path:
    from tureen.store import FeatureStore

    repo = root / "tureen"
    write_data(repo / "data")
    (repo / "features.py").write_text(TUREEN_FEATURES)
    (repo / "tureen.yaml").write_text(
        "project: bench\nregistry: data/registry.json\nonline_store:\n  type: sqlite\n"
        "  path: data/online.db\n")
    with FeatureStore(repo) as fs:
        fs.apply()
        now = datetime.now(UTC)
        fs.materialize(now - timedelta(days=30), now)
    return repo


def feast_repo(root: Path) -> Path | None:
    if not (FEAST_BIN / "feast").exists():
        return None
    repo = root / "feast"
    write_data(repo / "data")
    (repo / "features.py").write_text(FEAST_FEATURES)
    (repo / "feature_store.yaml").write_text(FEAST_YAML)
    env = {**os.environ, "FEAST_USAGE": "False", "PATH": f"{FEAST_BIN}:{os.environ['PATH']}"}
    for cmd in (["apply"], ["materialize", (datetime.now(UTC) - timedelta(days=30)).strftime(
            "%Y-%m-%dT%H:%M:%S"), datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")]):
        subprocess.run([str(FEAST_BIN / "feast"), *cmd], cwd=repo, env=env, check=True,
                       capture_output=True)
    return repo


@contextmanager
def process(cmd: list[str], ready_url: str, log: Path, cwd: Path | None = None,
            env: dict[str, str] | None = None, method: str = "GET",
            body: bytes = b"") -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=cwd,
                                env=env or os.environ.copy())
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[:3]} exited:\n{log.read_text()[-3000:]}")
            try:
                r = httpx.request(method, ready_url, content=body, timeout=2,
                                  headers={"content-type": "application/json"})
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(log.read_text()[-3000:])
            time.sleep(0.2)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v


def wrk(url: str, lua_body: str, conns: int, seconds: float, tmp: Path) -> dict[str, float]:
    """Run wrk with a Lua ``request`` function; returns rps and latency percentiles (ms)."""
    lua = tmp / f"req-{conns}.lua"
    lua.write_text(lua_body)
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{int(seconds)}s", "--latency",
                          "-s", str(lua), url], capture_output=True, text=True, check=True).stdout
    res: dict[str, float] = {}
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        res[f"p{pct}_ms"] = round(_ms(m.group(1)), 3) if m else float("nan")
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return res


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}


def lua_for_features(n: int = ENTITIES) -> str:
    feats = ", ".join(f'\\"account_stats:{f}\\"' for f in FEATURES)
    body = ('"{\\"features\\": [' + feats + '], \\"entities\\": {\\"account_id\\": [" .. id '
            '.. "]}}"')
    return LUA.replace("{n}", str(n)).replace("{body}", body)


#: Feast's benchmark shapes: (entities, features) per request
SHAPES = [(1, 10), (10, 10), (50, 10), (100, 10), (1, 50), (1, 250)]
CURVE_TARGETS_P99_MS = {"1x50": 2.0, "100x10": 5.0}
LUA_CURVE = '''
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
math.randomseed(7)
request = function()
  local ids = {}
  for i = 1, {entities} do ids[i] = 1001 + math.random(0, {n} - 1) end
  return wrk.format(nil, nil, nil, '{"features": [{features}], "entities": {"account_id": ['
    .. table.concat(ids, ",") .. ']}}')
end
'''


def feature_refs(count: int) -> list[str]:
    """The first ``count`` features: view k holds f{10k}..f{10k+9}."""
    return [f"{'account_stats' if i // 10 == 0 else f'account_stats_{i // 10}'}:f{i}"
            for i in range(count)]


def lua_for_shape(entities: int, features: int) -> str:
    feats = ", ".join(f'"{r}"' for r in feature_refs(features))
    return (LUA_CURVE.replace("{entities}", str(entities)).replace("{n}", str(ENTITIES))
            .replace("{features}", feats))


def curve(urls: dict[str, str], args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """p50/p99 at 1 connection for every shape, servers interleaved, medians of runs."""
    runs: dict[str, dict[str, list[dict[str, float]]]] = {}
    for _run in range(args.runs):
        for entities, features in SHAPES:
            lua = lua_for_shape(entities, features)
            for name, url in urls.items():
                if name == "bare":
                    continue
                per_server = runs.setdefault(f"{entities}x{features}", {})
                per_server.setdefault(name, []).append(wrk(url, lua, 1, args.duration, tmp))
    out: dict[str, Any] = {}
    for shape, by_server in runs.items():
        out[shape] = {name: median_of(r) for name, r in by_server.items()}
        if "feast" in out[shape]:
            out[shape]["p99_ratio_feast_vs_tureen"] = round(
                out[shape]["feast"]["p99_ms"] / out[shape]["tureen"]["p99_ms"], 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-feast", action="store_true")
    ap.add_argument("--curve", action="store_true",
                    help="batch curve instead: p50/p99 at 1 connection for 1/10/50/100 "
                    "entities x 10 features and 1 entity x 50 / 250 features")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install -y wrk")
    lua = lua_for_features()
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="tureen-bench-fs-") as tmp_s:
        tmp = Path(tmp_s)
        trepo = tureen_repo(tmp)
        frepo = None if args.no_feast else feast_repo(tmp)
        probe = json.dumps({"features": [f"account_stats:{f}" for f in FEATURES],
                            "entities": {"account_id": [1001]}}).encode()
        servers: dict[str, Any] = {}
        tp = free_port()
        servers["tureen"] = ([*CLI, "serve-features", "--repo", str(trepo), "--host",
                              "127.0.0.1", "--port", str(tp), "--no-grpc", "--workers", "1"],
                             tp, None, None)
        if frepo is not None:
            fp = free_port()
            env = {**os.environ, "FEAST_USAGE": "False"}
            servers["feast"] = ([str(FEAST_BIN / "feast"), "serve", "-h", "127.0.0.1", "-p",
                                 str(fp), "--no-access-log", "-w", "1"], fp, frepo, env)
        canned = tmp / "canned.json"
        bp = free_port()
        servers["bare"] = ([sys.executable, "-c", BARE, str(bp), str(canned)], bp, None, None)
        with contextlib.ExitStack() as stack:
            urls: dict[str, str] = {}
            for name, (cmd, port, cwd, env) in servers.items():
                url = urls[name] = f"http://127.0.0.1:{port}/get-online-features"
                if name == "bare":
                    canned.write_bytes(httpx.post(urls["tureen"], content=probe).content)
                stack.enter_context(process(cmd, url, tmp / f"{name}.log", cwd=cwd, env=env,
                                            method="POST", body=probe))
            if args.curve:
                load_before = os.getloadavg()
                shapes = curve(urls, args, tmp)
                print(json.dumps({
                    "benchmark": "feature server batch curve: /get-online-features, SQLite, "
                    "one worker, 1 connection (wrk)",
                    "duration_s": args.duration, "runs": args.runs, "cpus": os.cpu_count(),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()],
                    "shapes": shapes,
                    "targets_p99_ms": CURVE_TARGETS_P99_MS,
                    "meets_targets": all(shapes[k]["tureen"]["p99_ms"] <= v
                                         for k, v in CURVE_TARGETS_P99_MS.items()),
                }, indent=2))
                return
            # Interleaved: each run measures every server back to back, so load from other
            # work on the machine hits all of them alike.
            for _run in range(args.runs):
                for conns in (1, 16):
                    for name, url in urls.items():
                        res = results.setdefault(name, {"c1": [], "c16": []})
                        res[f"c{conns}"].append(wrk(url, lua, conns, args.duration, tmp))
    summary: dict[str, Any] = {k: {c: median_of(v) for c, v in r.items()}
                               for k, r in results.items()}
    feast_c16 = summary["feast"]["c16"]["rps"] if "feast" in summary else \
        FEAST_REFERENCE["rps_c16"]
    t16 = summary["tureen"]["c16"]
    out = {
        "benchmark": "feature server: 1 entity x 10 Float32 features, SQLite, one worker",
        "duration_s": args.duration, "runs": args.runs, "cpus": os.cpu_count(),
        "results": summary,
        "feast_source": "measured in this run" if "feast" in summary else
        "reference (earlier on this machine)",
        "feast_reference": FEAST_REFERENCE,
        "speedup_vs_feast_c16": round(t16["rps"] / feast_c16, 1),
        "speedup_vs_feast_c1": round(summary["tureen"]["c1"]["rps"] / (
            summary["feast"]["c1"]["rps"] if "feast" in summary else FEAST_REFERENCE["rps_c1"]),
            1),
        "fraction_of_bare_c16": round(t16["rps"] / summary["bare"]["c16"]["rps"], 2),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "targets": TARGETS,
        "meets_targets": t16["rps"] / feast_c16 >= TARGETS["speedup_vs_feast_c16"]
        and t16["p99_ms"] <= TARGETS["p99_ms_c16"],
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
