"""The console in a real browser (Playwright driving the system Chromium).

A user creates a deployment from the form (after a rejected first try), starts it, serves
requests and watches the request count and the log stream move without reloading, swaps the
version, rolls back, and reads a pipeline run's confusion matrix. Every page is screenshotted
into ``build/test-artifacts/console/``, checked with axe-core (run in the same page), and
reachable by keyboard; its JSON twin agrees with what it shows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.deployments.conftest import MODEL_PY, SERVICE, free_port, serve, tureen
from tests.e2e.server_process import ServerProcess, wait_ready
from tests.services import require_module, require_service
from tests.unit.console.conftest import CONFUSION, XSS, write_run

from tureen.examples.fraud import create_repo
from tureen.store import FeatureStore

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "build" / "test-artifacts" / "console"
AXE = ROOT / "tests" / "third_party" / "axe-core" / "axe.min.js"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
CLI = [sys.executable, "-c", "from tureen.cli.main import main; main()"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("console-browser")
    repo = create_repo(root / "repo", accounts=50)
    with FeatureStore(repo) as fs:
        fs.apply()
        now = datetime.now(UTC)
        fs.materialize(now - timedelta(days=40), now + timedelta(minutes=1))
    for v in (1, 2):
        src = root / f"model-v{v}"
        src.mkdir()
        (src / "model.py").write_text(MODEL_PY.replace("VERSION", f"{v}.0"))
        tureen("models", "register", "vmodel", str(src), "--framework", "custom",
               "--feature-service", SERVICE, "--metrics", f'{{"auc": 0.{v}}}',
               "--description", XSS, "--repo", str(repo))
    write_run(repo, "vmodel", 2)
    yield repo


def _console(repo: Path, log: Path) -> ServerProcess:
    port = free_port()
    with log.open("wb") as f:
        proc = subprocess.Popen([*CLI, "console", "--repo", str(repo), "--port", str(port)],
                                stdout=f, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return wait_ready(ServerProcess(proc, port, log=log), "tureen console", "/", 60)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_module("playwright", "pip install playwright (the test extra)")
    require_service(f"Chromium at {CHROMIUM}", Path(CHROMIUM).exists(),
                    "apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _until(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Pages:
    """Screenshots, axe-core and a JS-error watch for every page the test opens."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        self.checked: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("response", lambda r: self.errors.append(f"{r.status} {r.url}")
                if r.status >= 400 and r.url not in self.expected else None)
        self.expected: set[str] = set()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def check(self, name: str) -> None:
        page = self.page
        page.wait_for_load_state("load")
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        page.evaluate(AXE.read_text())
        result = page.evaluate(
            "async () => await axe.run(document, {runOnly: {type: 'tag', values: "
            "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})")
        bad = [f"{v['id']} ({v['impact']}): {v['help']} — "
               f"{[n['target'] for n in v['nodes']][:3]}" for v in result["violations"]
               if v["impact"] in ("serious", "critical")]
        assert not bad, f"{name}: accessibility violations:\n" + "\n".join(bad)
        assert page.locator("script:not([src])").count() == 0  # no inline scripts
        html = page.content()
        assert XSS not in html, f"{name}: a user string reached the page unescaped"
        self.checked.append(name)


def _predict(url: str, account: int = 1001, name: str = "fraud") -> float:
    r = httpx.post(f"{url}/v1/models/{name}:predict", json={"instances": [
        {"account_id": account}]}, timeout=10)
    r.raise_for_status()
    return float(r.json()["predictions"][0])


def test_console_end_to_end(repo: Path, browser: Any, tmp_path: Path) -> None:
    console = _console(repo, tmp_path / "console.log")
    server: ServerProcess | None = None
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    pages = Pages(page)
    try:
        # ---- create from the form: first a name the CLI refuses, then a good one ------------
        page.goto(console.url + "/deployments/new")
        pages.check("deployment-new")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"
        pages.expected.add(console.url + "/deployments")  # the refused form answers 400
        page.fill("#f-name", "Bad_Name")
        page.fill("#f-model", "vmodel:1")
        page.select_option("#f-logging", "ALL")
        page.click("text=Create deployment")
        cli_error = tureen("deploy", "create", "Bad_Name", "--model", "vmodel:1", "--repo",
                           str(repo), check=False).stderr.strip().removeprefix("Error: ")
        assert page.inner_text("#err-name") == cli_error
        assert page.get_attribute("#f-name", "aria-invalid") == "true"
        assert page.input_value("#f-model") == "vmodel:1"  # what was typed is kept
        pages.check("deployment-new-error")
        page.fill("#f-name", "fraud")
        page.click("text=Create deployment")
        page.wait_for_url(re.compile(r".*/deployments/fraud\?flash=created$"))
        assert "stopped" in page.inner_text("h1")
        page.click("#btn-state")
        page.wait_for_url(re.compile(r".*flash=started$"))
        assert "started" in page.inner_text("h1")

        # ---- serve it; the browser watches through the console `tureen serve` mounts -------
        server = serve(repo, tmp_path / "serve.log")
        base = server.url + "/console"
        serving_port = server.http_port
        assert _predict(server.url) == 1.0
        page.goto(base + "/deployments/fraud")
        curl = page.inner_text("#curl")
        assert f"127.0.0.1:{serving_port}/v1/models/fraud:predict" in curl
        for i in range(30):
            _predict(server.url, 1001 + i % 50)
        # the count moves without a reload (Server-Sent Events)
        _until("the live request count", lambda: int(page.inner_text("#live-requests")) >= 31)
        twin = page.request.get(base + "/deployments/fraud.json").json()
        _until("the page to show the twin's count", lambda: page.inner_text(
            "#live-requests") == str(page.request.get(base + "/deployments/fraud.json")
                                     .json()["live"]["requests"]))
        assert twin["state"] == "started" and twin["version"] == 1
        _until("the request-rate chart to draw", lambda: page.locator(
            "figure[data-chart=rate_svg] svg polyline").count() >= 1, timeout=15)
        pages.check("deployment-serving")

        # ---- a second tab streams WARNING+ log lines while the first swaps the version ------
        logs = ctx.new_page()
        logs.goto(base + "/deployments/fraud/logs?level=WARNING")
        logs.wait_for_selector("text=Live: new lines appear")
        before = logs.locator("#log-lines tbody tr").count()
        page.select_option("#f-version", "2")
        page.click("#btn-update")
        page.wait_for_url(re.compile(r".*flash=updated$"))
        _until("version 2 to answer", lambda: _predict(server.url) == 2.0)
        logs.wait_for_selector("#log-lines td:has-text('now serves vmodel version 2')",
                               timeout=20000)
        assert logs.locator("#log-lines tbody tr").count() > before
        assert logs.locator("#log-lines td:text-is('INFO')").count() == 0  # the filter holds
        page.goto(base + "/deployments/fraud")
        assert page.inner_text("#main-version") == "2"
        pages.page = logs
        pages.check("deployment-logs-live")
        pages.page = page

        # ---- roll back ------------------------------------------------------------------
        page.click("#btn-rollback")
        page.wait_for_url(re.compile(r".*flash=rolled-back$"))
        _until("version 1 to answer again", lambda: _predict(server.url) == 1.0)
        logs.wait_for_selector("#log-lines td:has-text('now serves vmodel version 1')",
                               timeout=20000)
        assert page.inner_text("#main-version") == "1"
        spec = json.loads(tureen("deploy", "status", "fraud", "--json", "--repo",
                                 str(repo)).stdout)
        assert spec["version"] == 1 and spec["history"] == []

        # ---- created and started in the console of the running server: served at once ----
        page.goto(base + "/deployments/new")
        page.fill("#f-name", "fraud-two")
        page.fill("#f-model", "vmodel")  # the latest version: 2
        page.click("text=Create deployment")
        page.wait_for_url(re.compile(r".*/deployments/fraud-two\?flash=created$"))
        page.click("#btn-state")
        page.wait_for_url(re.compile(r".*flash=started$"))

        def second() -> bool:
            try:
                return _predict(server.url, name="fraud-two") == 2.0
            except httpx.HTTPStatusError:
                return False

        _until("the deployment started while serving to answer", second, timeout=15)

        # ---- the pipeline run's confusion matrix, read off the SVG ------------------------
        page.goto(base + "/pipelines/20261206-101500-3f2a1c")
        cells = page.eval_on_selector_all(
            "#confusion text.cell",
            "els => els.map(e => [+e.dataset.row, +e.dataset.col, +e.textContent])")
        assert {(r, c): v for r, c, v in cells} == {
            (i, j): CONFUSION[i][j] for i in range(2) for j in range(2)}
        pages.check("pipeline-run")

        # ---- every other page: screenshot, axe, keyboard-reachable JSON twin --------------
        for name, path in [
            ("overview", "/"), ("features", "/features"),
            ("feature-view", "/features/account_profile?k.account_id=1001"),
            ("services", "/services"), ("service", f"/services/{SERVICE}"),
            ("entities", "/entities"), ("entity-lookup", "/entities/account?k.account_id=1001"),
            ("models", "/models"), ("model", "/models/vmodel?sort=auc"),
            ("model-version", "/models/vmodel/2"),
            ("model-compare", "/models/vmodel/compare?a=1&b=2"),
            ("deployments", "/deployments"), ("deployment", "/deployments/fraud"),
            ("inference-log", "/deployments/fraud/requests"),
            ("skew", "/deployments/fraud/skew"), ("pipelines", "/pipelines"),
        ]:
            page.goto(base + path)
            pages.check(name)
            twin_link = page.locator("footer a")
            assert twin_link.inner_text() == "This page as JSON"
            r = page.request.get(twin_link.get_attribute("href") and
                                 server.url + twin_link.get_attribute("href"))
            assert r.status == 200 and r.headers["content-type"] == "application/json"
        feature = page.request.get(base + "/features/account_profile.json?k.account_id=1001"
                                   ).json()
        page.goto(base + "/features/account_profile?k.account_id=1001")
        shown = page.eval_on_selector_all(
            "#vector tbody tr", "rows => rows.map(r => [r.cells[0].textContent, "
            "r.cells[2].textContent])")
        assert shown == [[r["feature"], r["status"]] for r in feature["lookup"]["rows"]]
        assert not pages.errors, pages.errors
    finally:
        ctx.close()
        console.stop()
        if server is not None:
            server.stop()
