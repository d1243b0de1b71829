"""Write actions: CSRF, the CLI's own errors next to the field, nothing changed by a failed
action, and the happy path through the Deployments service."""

from __future__ import annotations

import html
import re
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tureen.cli.main import cli
from tureen.store import FeatureStore


async def _token(client: httpx.AsyncClient, page: str = "/deployments/new") -> str:
    r = await client.get(page)
    m = re.search(r'name="csrf_token" value="([0-9a-f]+)"', r.text)
    assert m is not None
    return m.group(1)


def _field_errors(page: str) -> dict[str, str]:
    return {k: html.unescape(v) for k, v in
            re.findall(r'class="field-error" id="err-(\w*)"[^>]*>([^<]*)</p>', page)}


def _registry_version(repo: Path) -> int:
    with FeatureStore(repo) as fs:
        return fs.registry.snapshot(fresh=True).version


def _cli_error(repo: Path, *args: str) -> str:
    r = CliRunner().invoke(cli, [*args, "--repo", str(repo)])
    assert r.exit_code == 1, r.output
    return r.stderr.strip().removeprefix("Error: ")


@pytest.mark.parametrize(("form", "cli_args", "field"), [
    ({"name": "Bad_Name", "model": "clf"}, ["deploy", "create", "Bad_Name", "--model", "clf"],
     "name"),
    ({"name": "ok-name", "model": "clf:9"}, ["deploy", "create", "ok-name", "--model", "clf:9"],
     "model"),
    ({"name": "ok-name", "model": "nomodel"},
     ["deploy", "create", "ok-name", "--model", "nomodel"], "model"),
    ({"name": "ok-name", "model": "clf", "feature_service": "nope"},
     ["deploy", "create", "ok-name", "--model", "clf", "--feature-service", "nope"],
     "feature_service"),
    ({"name": "ok-name", "model": "clf", "batching": "max_batch=3"},
     ["deploy", "create", "ok-name", "--model", "clf", "--batching", "max_batch=3"],
     "batching"),
    ({"name": "ok-name", "model": "clf", "workers": "0"},
     ["deploy", "create", "ok-name", "--model", "clf", "--workers", "0"], "workers"),
    ({"name": "ok-name", "model": "clf", "idle_unload": "-5"},
     ["deploy", "create", "ok-name", "--model", "clf", "--idle-unload", "-5"], "idle_unload"),
    ({"name": "fraud", "model": "clf"}, ["deploy", "create", "fraud", "--model", "clf"],
     "name"),
])
async def test_create_shows_the_cli_error_next_to_the_field(
        client: httpx.AsyncClient, repo: Path, form: dict[str, str], cli_args: list[str],
        field: str) -> None:
    expected = _cli_error(repo, *cli_args)
    before = _registry_version(repo)
    token = await _token(client)
    r = await client.post("/deployments", data={"csrf_token": token, **form})
    assert r.status_code == 400
    assert _field_errors(r.text) == {field: expected}
    assert f'id="f-{field}"' in r.text and 'aria-invalid="true"' in r.text
    assert _registry_version(repo) == before  # nothing written


async def test_csrf_is_required(client: httpx.AsyncClient, repo: Path) -> None:
    before = _registry_version(repo)
    r = await client.post("/deployments/fraud/start", data={})
    assert r.status_code == 403
    r = await client.post("/deployments/fraud/start", data={"csrf_token": "0" * 64})
    assert r.status_code == 403
    token = await _token(client)
    r = await client.post("/deployments/fraud/start", data={"csrf_token": token},
                          headers={"origin": "http://evil.example"})
    assert r.status_code == 403
    r = await client.post("/deployments/fraud/start", data={"csrf_token": token},
                          headers={"sec-fetch-site": "cross-site"})
    assert r.status_code == 403
    other = httpx.AsyncClient(transport=client._transport, base_url="http://console.test")
    async with other:  # another browser: its own cookie, so this token is not its
        r = await other.post("/deployments/fraud/start", data={"csrf_token": token})
    assert r.status_code == 403
    assert _registry_version(repo) == before


async def test_actions_go_through_the_deployments_service(client: httpx.AsyncClient,
                                                          repo: Path) -> None:
    token = await _token(client)
    r = await client.post("/deployments", data={
        "csrf_token": token, "name": "web", "model": "clf:1", "logging": "NONE",
        "workers": "1"})
    assert r.status_code == 303 and r.headers["location"] == "/deployments/web?flash=created"
    post = {"csrf_token": token}
    assert (await client.post("/deployments/web/start", data=post)).status_code == 303
    assert (await client.get("/deployments/web.json")).json()["state"] == "started"
    r = await client.post("/deployments/web/update", data={**post, "version": "2"})
    assert r.status_code == 303
    j = (await client.get("/deployments/web.json")).json()
    assert j["version"] == 2 and j["history"] == [1]
    r = await client.post("/deployments/web/canary", data={
        **post, "canary_version": "3", "canary_percent": "25"})
    assert r.status_code == 303
    assert (await client.get("/deployments/web.json")).json()["canary"] == {
        "version": 3, "percent": 25.0}
    # a bad percent: the service's error next to the canary form, nothing changed
    before = _registry_version(repo)
    r = await client.post("/deployments/web/canary", data={**post, "canary_percent": "150"})
    assert r.status_code == 400
    assert "canary percent 150.0 must be between 0 and 100" in html.unescape(r.text)
    assert _registry_version(repo) == before
    assert (await client.post("/deployments/web/promote", data=post)).status_code == 303
    assert (await client.get("/deployments/web.json")).json()["version"] == 3
    assert (await client.post("/deployments/web/rollback", data=post)).status_code == 303
    assert (await client.get("/deployments/web.json")).json()["version"] == 2
    assert (await client.post("/deployments/web/stop", data=post)).status_code == 303
    r = await client.get("/deployments/web/kserve.yaml")
    assert r.status_code == 200 and b"InferenceService" in r.content
    r = await client.post("/deployments/web/delete", data={**post, "confirm": "nope"})
    assert r.status_code == 400
    assert (await client.post("/deployments/web/delete", data={**post, "confirm": "web"})
            ).status_code == 303
    assert (await client.get("/deployments/web.json")).status_code == 404


async def test_forms_are_bounded(client: httpx.AsyncClient) -> None:
    token = await _token(client)
    r = await client.post("/deployments", data={"csrf_token": token, "name": "x" * 5000})
    assert r.status_code == 400
    r = await client.post("/deployments", content=b"a=" + b"x" * 100_000,
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400
    r = await client.post("/deployments", json={"name": "x"})  # no form: no token either
    assert r.status_code == 403


async def test_a_deployment_started_while_serving_is_picked_up(repo: Path) -> None:
    """What the console's Start button relies on: a running server serves it within a tick,
    with no restart."""
    import gc

    from tureen.deployments import Deployments
    from tureen.deployments.watcher import DeploymentWatcher
    from tureen.serving.dataplane import DataPlane

    deps = Deployments.for_repo(repo)
    deps.create("late", "clf", 2)
    dp = DataPlane()
    watcher = DeploymentWatcher(dp, deps.features, interval=0.05)
    try:
        assert await watcher.tick() == []  # stopped: not served
        deps.set_state("late", "started")
        assert await watcher.tick() == ["late"]
        assert "late" in dp.list_models() and dp.model_ready("late")
        assert await watcher.tick() == []  # once
        deps.create("broken", "clf", 1, transformer=None)
        deps.set_state("broken", "started")
        (repo / "models" / "clf" / "1" / "model.py").rename(repo / "model.py.bak")
        try:
            assert await watcher.tick() == []  # fails to load: logged, retried, not fatal
        finally:
            (repo / "model.py.bak").rename(repo / "models" / "clf" / "1" / "model.py")
        assert await watcher.tick() == ["broken"]
    finally:
        for name in ("late", "broken"):
            deps.delete(name)
        dp.close()
        gc.unfreeze()
