"""What authentication and TLS cost: the same servers with auth off, API tokens, OIDC (cached
key) and TLS, measured back to back in each round.

Workload: scikit-learn LogisticRegression over 10 Float32 features, one row per request (v1,
OIP REST, OIP gRPC), and the Feast route ``/get-online-features`` (one entity of the fraud
example repo, fraud_detection_v1). One worker per server, 16 connections; wrk for REST,
h2load for gRPC (``https://`` with ALPN h2 for the TLS point; h2load prints the negotiated
cipher). OIDC tokens are RS256 JWTs from a JWKS served locally by this script; after the first
request the key and the verified token are cached, so the request path makes no network call
(the JWKS fetch count is reported).

The servers start once. Per surface, auth off and each mode are measured in ``--pairs`` rounds
of one ``--window``-second window each, every other round in reverse order (``ab.py``); a ratio
against auth off (TLS against plaintext gRPC) is the median of its per-round ratios
(``ratios``; quartiles and extremes in ``ratio_spread``), absolute numbers are medians over
windows, and the load average is recorded before and after each surface. Model-server windows
also record the mean rows per predict call (from ``/metrics``): the adaptive batcher's batch
size moves throughput more than anything auth does.

The clients run on the same machine. With a credential, wrk adds an ``Authorization: Bearer``
header and h2load ``authorization`` metadata, which nghttp2 sends as a never-indexed,
Huffman-coded HPACK literal on every call (callgrind: 16.3k h2load instructions per call
without it, 17.9k with it; the server spends about 600k), so the client's extra work is small
next to the server's and both sides of a ratio send the bytes a real client sends.

    python bench/bench_auth.py [--window 1] [--pairs 8] [--only token | v2,token | tls]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import ab  # noqa: E402
from bench_model_server import (  # noqa: E402
    ROW,
    build_repository,
    check_grpc,
    free_port,
    grpc_body,
    wait_http,
)
from tests.e2e.auth.jwks_server import Issuer  # noqa: E402

from tureen.auth.devcert import make_dev_certs  # noqa: E402
from tureen.auth.tls import client_context  # noqa: E402
from tureen.auth.tokens import Tokens  # noqa: E402
from tureen.examples.fraud import create_repo  # noqa: E402
from tureen.store import FeatureStore  # noqa: E402

CLI = [sys.executable, "-c", "from tureen.cli.main import main; main()"]
TARGETS = {"token_vs_off": 0.95, "oidc_vs_off": 0.90, "grpc_tls_vs_plain": 0.70}
SURFACES = ("v1", "v2", "grpc", "feast")
MODES = ("token", "oidc", "tls")  # each against "off"; tls on gRPC only


def plan(only: str | None) -> dict[str, list[str]]:
    """The groups to measure: per surface, auth off and the modes ``--only`` asks for.

    ``--only`` is a comma-separated list of surfaces (v1, v2, grpc, feast) and modes (token,
    oidc, tls): ``token`` is the API-token points on every surface, ``v2,token`` only v2's.
    """
    words = [w.strip() for w in (only or "").split(",") if w.strip()]
    unknown = [w for w in words if w not in SURFACES + MODES]
    if unknown:
        raise SystemExit(f"--only {','.join(unknown)}: choose from "
                         f"{', '.join(SURFACES + MODES)}")
    modes = [m for m in MODES if m in words] or list(MODES)
    surfaces = [s for s in SURFACES if s in words] or list(SURFACES)
    groups = {}
    for surface in surfaces:
        members = [m for m in modes if m != "tls" or surface == "grpc"]
        if members:
            groups[surface] = [f"{surface}_{m}" for m in ("off", *members)]
    if not groups:
        raise SystemExit(f"--only {only}: TLS is measured on grpc only")
    return groups


def auth_ratios(windows: dict[str, list[dict[str, float]]]) -> tuple[dict[str, Any],
                                                                      dict[str, Any]]:
    """Medians of per-round throughput ratios (``ratios``) and their spread."""
    ratios: dict[str, Any] = {}
    spreads: dict[str, Any] = {}
    for section, mode in (("token_vs_off", "token"), ("oidc_cached_vs_off", "oidc")):
        for p in SURFACES:
            if f"{p}_{mode}" in windows and f"{p}_off" in windows:
                sp = ab.paired_ratio(windows[f"{p}_{mode}"], windows[f"{p}_off"],
                                     "requests_per_s")
                ratios.setdefault(section, {})[p] = round(sp["median"], 2)
                spreads.setdefault(section, {})[p] = sp
    if "grpc_tls" in windows:
        sp = ab.paired_ratio(windows["grpc_tls"], windows["grpc_off"], "requests_per_s")
        ratios["grpc_tls_vs_plain"], spreads["grpc_tls_vs_plain"] = round(sp["median"], 2), sp
    # the same comparisons by the server's CPU per request (off / mode: 0.95 = 5% more CPU)
    for section, mode in (("token_vs_off_by_server_cpu", "token"),
                          ("oidc_cached_vs_off_by_server_cpu", "oidc"),
                          ("grpc_tls_vs_plain_by_server_cpu", "tls")):
        for p in SURFACES:
            if f"{p}_{mode}" in windows and f"{p}_off" in windows:
                sp = ab.paired_ratio(windows[f"{p}_off"], windows[f"{p}_{mode}"],
                                     "server_cpu_us_per_request")
                if mode == "tls":
                    ratios[section], spreads[section] = round(sp["median"], 2), sp
                else:
                    ratios.setdefault(section, {})[p] = round(sp["median"], 2)
                    spreads.setdefault(section, {})[p] = sp
    return ratios, spreads


def batching(metrics_url: str, token: str | None) -> tuple[float, float]:
    """(rows predicted, predict calls) of the model ``lr`` so far, from ``/metrics``."""
    h = {"authorization": f"Bearer {token}"} if token else {}
    text = httpx.get(metrics_url, headers=h, timeout=10).text
    rows = calls = 0.0
    for m in re.finditer(r'^tureen_executions_total\{([^}]*)\} (\S+)$', text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("model") == "lr":
            calls += float(m.group(2))
            rows += float(labels["batch_size"]) * float(m.group(2))
    return rows, calls


def wrk(url: str, body: str, conns: int, seconds: float, tmp: Path,
        token: str | None) -> dict[str, float]:
    lua = tmp / f"post{abs(hash((body, token)))}.lua"
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"\n' if token else ""
    lua.write_text('wrk.method = "POST"\nwrk.body = ' + json.dumps(body) +
                   '\nwrk.headers["Content-Type"] = "application/json"\n' + auth)
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{int(seconds)}s", "--latency", "-s",
                          str(lua), url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {"requests_per_s": rps, "requests": done, "errors": int(bad.group(1)) if bad else 0}


def h2load(target: str, body: Path, conns: int, seconds: float, token: str | None,
           tls: bool) -> tuple[dict[str, float], str | None]:
    headers = ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    if token:
        headers += ["-H", f"authorization: Bearer {token}"]
    scheme = "https" if tls else "http"
    out = subprocess.run(
        ["h2load", "-t1", f"-c{conns}", "-m1", "-D", str(int(seconds)), "-d", str(body),
         *headers, f"{scheme}://{target}/inference.GRPCInferenceService/ModelInfer"],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out).group(1))  # type: ignore[union-attr]
    ok = re.search(r"status codes: (\d+) 2xx", out)
    cipher = re.search(r"Cipher: (\S+)", out)
    proto = re.search(r"TLS Protocol: (\S+)", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done", out)
    return ({"requests_per_s": rps, "ok_2xx": int(ok.group(1)) if ok else 0,
             "requests": int(done.group(1)) if done else 0},
            f"{proto.group(1)} {cipher.group(1)}" if cipher and proto else None)


def per_request_cost(repo: Path, token: str, jwt: str, issuer_url: str) -> dict[str, float]:
    """CPU per request of the auth steps alone, in process (microseconds, median of 5)."""
    import asyncio
    import timeit

    from tureen.auth.chain import build_security
    from tureen.auth.settings import AuthSettings
    from tureen.serving.guard import GuardChain

    store = FeatureStore(repo)
    auth = AuthSettings.model_validate({"type": ["token", "oidc"], "oidc": {
        "issuer": issuer_url, "audience": "tureen"}})
    sec = build_security(auth=auth, tls=None, audit=None, host="127.0.0.1",
                         registry=store.registry, project=store.project)
    chain, bare = GuardChain(sec.guards, sec.authorizer), GuardChain([])
    op = "/inference.GRPCInferenceService/ModelInfer"

    def run(ch: GuardChain, cred: str | None) -> None:
        ctx = ch.context("grpc", op, {"authorization": f"Bearer {cred}"} if cred else {})
        for g in ch.guards:
            g.check(ctx)
        ctx.authorizer.check(ctx, "predict", "/lr")

    asyncio.run(sec.authenticator.oidc.authenticate(jwt))  # type: ignore[union-attr]
    out = {}
    for name, ch, cred in (("none", bare, None), ("token", chain, token), ("oidc", chain, jwt)):
        times = [timeit.timeit(lambda c=ch, t=cred: run(c, t), number=20000) / 20000 * 1e6
                 for _ in range(5)]
        out[name] = round(sorted(times)[2], 2)
    return {"context_only_us": out["none"], "token_us": out["token"],
            "oidc_cached_us": out["oidc"],
            "token_added_us": round(out["token"] - out["none"], 2),
            "oidc_added_us": round(out["oidc"] - out["none"], 2)}


def start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as f:
        return subprocess.Popen([*CLI, *args], stdout=f, stderr=subprocess.STDOUT, env=env)


def status(url: str, token: str | None, body: str) -> int:
    h = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(url, content=body, headers=h, timeout=10).status_code


def main() -> None:
    ap = argparse.ArgumentParser()
    ab.add_arguments(ap, "surface", "comma-separated surfaces (v1, v2, grpc, feast) and/or "
                     "modes (token, oidc, tls); default all")
    ap.add_argument("--conns", type=int, default=16)
    args = ap.parse_args()
    groups = plan(args.only)
    wanted = {k for members in groups.values() for k in members}
    for tool, pkg in (("wrk", "wrk"), ("h2load", "nghttp2-client")):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed: apt-get install -y {pkg}")
    tmp = Path(tempfile.mkdtemp(prefix="tureen-bench-auth-"))
    procs: list[subprocess.Popen[bytes]] = []
    issuer = Issuer()
    try:
        build_repository(tmp / "models")
        repo = create_repo(tmp / "repo", accounts=200, days=10)
        with FeatureStore(repo) as fs:
            fs.apply()
            now = datetime.now(UTC)
            fs.materialize(now - timedelta(days=11), now + timedelta(minutes=1))
        plain_yaml = (repo / "tureen.yaml").read_text()
        (repo / "tureen.yaml").write_text(
            plain_yaml + "serving:\n  auth:\n    type: [token, oidc]\n    oidc:\n"
            f"      issuer: {issuer.url}\n      audience: tureen\n")
        token, _ = Tokens(FeatureStore(repo).registry).create(["admin"], name="bench")
        jwt = issuer.token(roles=["admin"], exp_in=3600)
        noauth = tmp / "repo_noauth"
        shutil.copytree(repo, noauth)
        (noauth / "tureen.yaml").write_text(plain_yaml)
        certs = make_dev_certs(tmp / "certs")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        ports: dict[str, tuple[int, int]] = {}
        pids: dict[str, subprocess.Popen[bytes]] = {}  # model servers by mode, feast_<mode>
        base = ["serve-model", "--model_repository", str(tmp / "models"), "--workers", "1"]
        model_modes = {k.split("_")[1] for k in wanted if not k.startswith("feast_")}
        feast_modes = {k.split("_")[1] for k in wanted if k.startswith("feast_")}
        modes = {
            "off": [],
            "token": ["--repo", str(repo), "--auth", "token"],
            "oidc": ["--repo", str(repo), "--auth", "oidc"],
            "tls": ["--tls-cert", str(certs.cert), "--tls-key", str(certs.key)],
        }
        for mode, extra in modes.items():  # the servers the chosen points need, started once
            hp, gp = free_port(), free_port()
            ports[mode] = (hp, gp)
            if mode in model_modes:
                pids[mode] = start([*base, "--http_port", str(hp), "--grpc_port", str(gp),
                                    *extra], tmp / f"model-{mode}.log", env)
                procs.append(pids[mode])
        fports = {"off": free_port(), "token": free_port(), "oidc": free_port()}
        for mode, r in (("off", noauth), ("token", repo), ("oidc", repo)):
            extra = ["--auth", mode] if mode != "off" else []
            if mode in feast_modes:
                pids[f"feast_{mode}"] = start(
                    ["serve-features", "--repo", str(r), "--no-grpc", "--port",
                     str(fports[mode]), *extra], tmp / f"features-{mode}.log", env)
                procs.append(pids[f"feast_{mode}"])
        for mode in ("off", "token", "oidc"):
            if mode in model_modes:
                wait_http(f"http://127.0.0.1:{ports[mode][0]}/v2/health/ready")
            if mode in feast_modes:
                wait_http(f"http://127.0.0.1:{fports[mode]}/health")
        deadline = time.monotonic() + 60
        while "tls" in model_modes:  # the TLS server: ready over https
            try:
                if httpx.get(f"https://localhost:{ports['tls'][0]}/v2/health/ready",
                             verify=client_context(str(certs.ca)), timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)
        creds = {"off": None, "token": token, "oidc": jwt}
        v1 = json.dumps({"instances": [ROW]})
        v2 = json.dumps({"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 10],
                                     "data": ROW}]})
        feast = json.dumps({"feature_service": "fraud_detection_v1",
                            "entities": {"account_id": [1001]}})
        body = grpc_body(tmp / "infer.bin", "lr")
        if "grpc_off" in wanted:
            check_grpc(f"127.0.0.1:{ports['off'][1]}", "lr")
        # every point answers 200 with its credential and 401 without (the bench measures
        # real authentication, not a server that ignores it)
        for mode in ("token", "oidc"):
            url = f"http://127.0.0.1:{ports[mode][0]}/v1/models/lr:predict"
            furl = f"http://127.0.0.1:{fports[mode]}/get-online-features"
            if mode in model_modes:
                assert status(url, creds[mode], v1) == 200 and status(url, None, v1) == 401
            if mode in feast_modes:
                assert (status(furl, creds[mode], feast) == 200
                        and status(furl, None, feast) == 401)
        fetches_before = issuer.fetches
        points: dict[str, Any] = {}
        for mode in ("off", "token", "oidc"):
            hp, gp = ports[mode]
            points[f"v1_{mode}"] = ("wrk", f"http://127.0.0.1:{hp}/v1/models/lr:predict", v1,
                                    creds[mode])
            points[f"v2_{mode}"] = ("wrk", f"http://127.0.0.1:{hp}/v2/models/lr/infer", v2,
                                    creds[mode])
            points[f"grpc_{mode}"] = ("h2", f"127.0.0.1:{gp}", body, creds[mode], False)
            points[f"feast_{mode}"] = ("wrk", f"http://127.0.0.1:{fports[mode]}"
                                       "/get-online-features", feast, creds[mode])
        points["grpc_tls"] = ("h2", f"localhost:{ports['tls'][1]}", body, None, True)
        cipher = None

        def run(key: str, seconds: int) -> dict[str, float]:
            spec = points[key]
            surface, mode = key.split("_")
            metrics = (f"http://127.0.0.1:{ports[mode][0]}/metrics"
                       if surface != "feast" and mode != "tls" else None)
            before = batching(metrics, spec[3]) if metrics else None

            def load() -> dict[str, float]:
                nonlocal cipher
                if spec[0] == "wrk":
                    return wrk(spec[1], spec[2], args.conns, seconds, tmp, spec[3])
                res, c = h2load(spec[1], spec[2], args.conns, seconds, spec[3], spec[4])
                cipher = c or cipher
                return res

            res = ab.with_server_cpu(load, pids[key if surface == "feast" else mode].pid)
            if before is not None and metrics is not None:
                rows, calls = (a - b for a, b in zip(batching(metrics, spec[3]), before,
                                                     strict=True))
                res["rows_per_predict"] = round(rows / calls, 2) if calls else 0.0
            return res

        # the points a ratio compares are measured in short windows, alternating, round by
        # round (bench/ab.py), so a change in background load hits both sides alike
        windows, conditions = ab.measure_groups(
            groups, lambda k: run(k, args.window), args.pairs,
            warmup=(lambda k: run(k, args.warmup)) if args.warmup > 0 else None)
        med = {k: ab.summarize(v) for k, v in windows.items()}
        ratios, spreads = auth_ratios(windows)
        report = {
            "machine": {"cpus": os.cpu_count(), "loadavg_start_end": None,
                        "groups": conditions, "pairs": args.pairs,
                        "seconds_per_window": args.window, "warmup_seconds": args.warmup,
                        "method": "rounds of one window per point of a surface, every other "
                                  "round reversed; ratio = median of per-round ratios",
                        "connections": args.conns, "workers": 1,
                        "load_generators": {"rest": "wrk -t1", "grpc": "h2load -t1 -m1"}},
            "medians": med,
            "ratios": ratios,
            "ratio_spread": spreads,
            **({"windows": windows} if args.raw else {}),
            "tls": {"negotiated": cipher, "alpn": "h2", "certificate": "ECDSA P-256 (dev CA)"},
            "jwks_fetches_during_load": issuer.fetches - fetches_before,
            "auth_cpu_per_request_in_process": per_request_cost(repo, token, jwt, issuer.url),
            "targets": TARGETS,
        }
        return_report(report)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        issuer.close()
        shutil.rmtree(tmp, ignore_errors=True)


LOAD_AT_START = ab.loadavg()


def return_report(report: dict[str, Any]) -> None:
    report["machine"]["loadavg_start_end"] = [LOAD_AT_START, ab.loadavg()]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
