"""`tureen token`, `tureen auth check`, `tureen dev-cert` and `tureen audit` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def tureen(repo: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "tureen", *args, "--repo", str(repo)],
                          capture_output=True, text=True, timeout=120)
    if ok:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def test_token_lifecycle_and_explained_decisions(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "tureen.yaml").write_text(
        "project: fraud\nserving:\n  auth:\n    type: token\n"
        "    roles: {analyst: [read_features, predict]}\n  audit: {sink: data/audit}\n")
    out = tureen(repo, "token", "create", "--role", "analyst", "--deployment", "fraud-*",
                 "--expires", "30d", "--name", "ci")
    token = out.stdout.strip()
    assert token.startswith("tureen_") and "shown only now" in out.stderr
    assert token not in (repo / "data" / "registry.json").read_text()
    listed = json.loads(tureen(repo, "token", "list", "--json").stdout)
    assert [(t["name"], t["roles"], t["names"], t["state"]) for t in listed] == [
        ("ci", ["analyst"], ["fraud-*"], "active")]
    assert "secret_sha256" not in listed[0]

    ok = tureen(repo, "auth", "check", "--token", token, "--action", "predict",
                "--resource", "fraud/fraud-v2")
    assert ok.stdout.startswith("ALLOW") and "role analyst grants predict" in ok.stdout
    no = tureen(repo, "auth", "check", "--token", token, "--action", "predict",
                "--resource", "fraud/churn", ok=False)
    assert no.returncode == 1 and "name churn is outside" in no.stdout
    no = tureen(repo, "auth", "check", "--token", token, "--action", "write_features", ok=False)
    assert "no role of the identity grants write_features" in no.stdout

    tureen(repo, "token", "revoke", "ci")
    no = tureen(repo, "auth", "check", "--token", token, "--action", "predict",
                "--resource", "fraud/fraud-v2", "--json", ok=False)
    verdict = json.loads(no.stdout)
    assert not verdict["allowed"] and "is revoked" in verdict["reasons"][0]

    bad = tureen(repo, "token", "create", "--role", "reeder", ok=False)
    assert bad.returncode == 1 and "unknown role 'reeder'" in bad.stderr
    bad = tureen(repo, "auth", "check", "--token", token, "--action", "fly", ok=False)
    assert "unknown action 'fly'" in bad.stderr

    events = json.loads(tureen(repo, "audit", "query", "--action", "admin", "--json").stdout)
    assert len(events) == 2 and {e["source"] for e in events} == {"local"}
    tail = tureen(repo, "audit", "tail", "-n", "1")
    assert "admin" in tail.stdout


def test_dev_cert_writes_a_ca_and_a_server_pair(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "tureen", "dev-cert", "--out",
                           str(tmp_path / "certs"), "--client", "svc"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--tls-cert" in proc.stdout and "--tls-client-ca" in proc.stdout
    names = sorted(p.name for p in (tmp_path / "certs").iterdir())
    assert names == ["ca-key.pem", "ca.pem", "server-key.pem", "server.pem", "svc-key.pem",
                     "svc.pem"]
