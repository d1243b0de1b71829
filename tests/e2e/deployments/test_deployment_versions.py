"""Issue 10's deployment defects, each with a real `tureen serve`:

- a deployment named after its model (Hopsworks-style: `mnist` serves Models/mnist/2);
- after `deploy update --version 2` and during a canary, OIP responses and metadata name the
  version that answered (they said 1);
- `deploy update --rollback` to a deleted version is refused (it reported success, logged an
  ERROR every second, kept serving the old version and `deploy status` lied).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
from tests.e2e.deployments.conftest import MODEL_PY, SERVICE, Server, serve, tureen

OIP = {"inputs": [{"name": "account_id", "datatype": "INT64", "shape": [1], "data": [1001]}]}


def infer(server: Server, path: str = "/v2/models/vmodel/infer") -> tuple[float, str]:
    r = httpx.post(server.url + path, json=OIP, timeout=30)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return float(body["outputs"][0]["data"][0]), body["model_version"]


def metadata_versions(server: Server) -> list[str]:
    r = httpx.get(server.url + "/v2/models/vmodel", timeout=30)
    assert r.status_code == 200, r.text
    versions: list[str] = r.json()["versions"]
    return versions


def wait_for(server: Server, value: float, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while infer(server)[0] != value:
        assert time.monotonic() < deadline, f"version {value} never served"
        time.sleep(0.1)


def test_deployment_named_after_its_model_names_the_version_that_answered(
    repo: Path, tmp_path: Path
) -> None:
    tureen("deploy", "create", "vmodel", "--model", "vmodel:1", "--feature-service", SERVICE,
           "--repo", str(repo))  # refused before: "also a registered model's name"
    tureen("deploy", "start", "vmodel", "--repo", str(repo))
    server = serve(repo, tmp_path / "serve.log")
    try:
        assert infer(server) == (1.0, "1")
        assert metadata_versions(server) == ["1"]

        tureen("deploy", "update", "vmodel", "--version", "2", "--repo", str(repo))
        wait_for(server, 2.0)
        assert infer(server) == (2.0, "2")  # said "1"
        assert metadata_versions(server) == ["2"]

        tureen("deploy", "update", "vmodel", "--canary-version", "1", "--canary-percent", "50",
               "--repo", str(repo))
        wait_for(server, 1.0)
        answers = [infer(server) for _ in range(40)]
        assert {v for v, _ in answers} == {1.0, 2.0}
        assert all(float(version) == value for value, version in answers)  # each names its own
        assert metadata_versions(server) == ["1", "2"]
        assert infer(server, "/v2/models/vmodel/versions/1/infer") == (1.0, "1")
        assert infer(server, "/v2/models/vmodel/versions/2/infer") == (2.0, "2")
    finally:
        assert server.stop() == 0, (tmp_path / "serve.log").read_text()


def test_rollback_to_a_deleted_version_is_refused(repo: Path, tmp_path: Path) -> None:
    for v in (1, 2):
        src = tmp_path / f"rb-v{v}"
        src.mkdir()
        (src / "model.py").write_text(MODEL_PY.replace("VERSION", f"{v}.0"))
        tureen("models", "register", "rbm", str(src), "--framework", "custom", "--repo",
               str(repo))
    tureen("deploy", "create", "rb", "--model", "rbm:1", "--repo", str(repo))
    tureen("deploy", "update", "rb", "--version", "2", "--repo", str(repo))
    tureen("models", "delete", "rbm:1", "--yes", "--repo", str(repo))  # only in the history
    r = tureen("deploy", "update", "rb", "--rollback", "--repo", str(repo), check=False)
    assert r.returncode == 1
    assert "version 1" in r.stderr and "deleted" in r.stderr and "Traceback" not in r.stderr
    status = json.loads(tureen("deploy", "status", "rb", "--repo", str(repo), "--json").stdout)
    assert status["version"] == 2  # unchanged


def test_export_into_the_repo_carries_what_the_image_needs(repo: Path) -> None:
    """`deploy export --out k8s/` inside the repo wrote k8s/repo/features.py, after which plan
    and apply failed on duplicate definitions; its requirements.txt pinned an unpublished
    tureen; its transformer read a SQLite file the cluster does not have."""
    import subprocess
    import sys

    tureen("deploy", "create", "exported", "--model", "vmodel:1", "--feature-service", SERVICE,
           "--repo", str(repo))
    out = repo / "k8s"
    refused = tureen("deploy", "export", "exported", "--out", str(out), "--repo", str(repo),
                     check=False)
    assert refused.returncode == 1 and "SQLite" in refused.stderr
    assert "--bundle-online-store" in refused.stderr and not out.exists()

    tureen("deploy", "export", "exported", "--out", str(out), "--bundle-online-store",
           "--repo", str(repo))
    assert (out / "repo" / "features.py").is_file()
    assert (out / "repo" / "data" / "registry.json").is_file()
    assert (out / "repo" / "data" / "online.db").stat().st_size > 0
    plan = tureen("plan", "--repo", str(repo)).stdout
    assert "No changes" in plan and "k8s" not in plan.split("No changes")[0]

    line = (out / "requirements.txt").read_text().strip()
    assert line.startswith("./wheels/tureen-") and line.endswith("[redis]")
    assert "COPY wheels/ wheels/" in (out / "Dockerfile").read_text()
    check = subprocess.run(  # what `pip wheel -r requirements.txt` in the image resolves
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q",
         "-r", "requirements.txt"], cwd=out, capture_output=True, text=True, timeout=600)
    assert check.returncode == 0, check.stderr[-2000:]
