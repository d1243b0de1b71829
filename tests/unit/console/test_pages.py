"""Every page renders, its JSON twin carries what it shows, and no user string or secret
leaks into the HTML unescaped."""

from __future__ import annotations

import html
import re

import httpx
import pytest
from tests.unit.console.conftest import SECRET, XSS

PAGES = [
    "/", "/features", "/features/account_profile", "/features/hostile_view",
    "/features/transaction_risk", "/features/account_profile?k.account_id=1001",
    "/services", "/services/fraud_detection_v1", "/entities", "/entities/account",
    "/entities/account?k.account_id=1001", "/models", "/models/clf", "/models/clf?sort=auc",
    "/models/clf/2", "/models/clf/compare?a=1&b=3", "/deployments", "/deployments/new",
    "/deployments/fraud", "/deployments/fraud/logs", "/deployments/fraud/requests",
    "/pipelines", "/pipelines/20261206-101500-3f2a1c",
]


def _json_path(page: str) -> str:
    path, _, query = page.partition("?")
    path = "/index" if path == "/" else path
    return f"{path}.json" + (f"?{query}" if query else "")


@pytest.mark.parametrize("page", PAGES)
async def test_page_and_its_json_twin(client: httpx.AsyncClient, page: str) -> None:
    r = await client.get(page)
    assert r.status_code == 200, r.text[:2000]
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    body = r.text
    assert XSS not in body  # escaped everywhere
    assert SECRET not in body
    j = await client.get(_json_path(page))
    assert j.status_code == 200
    assert j.headers["content-type"] == "application/json"
    assert SECRET not in j.text
    same = await client.get(page, headers={"accept": "application/json"})
    assert _stable(same.json()) == _stable(j.json())


def _stable(obj: object) -> object:
    """The twin without the clock (``as_of``: when a lookup ran)."""
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if k != "as_of"}
    if isinstance(obj, list):
        return [_stable(v) for v in obj]
    return obj


def _cells(page: str, table_id: str) -> list[list[str]]:
    """The text of each body row of table ``table_id``."""
    body = page.split(f'id="{table_id}"', 1)[1].split("<tbody", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
             for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S)] for r in rows]


@pytest.mark.parametrize(("page", "table", "key", "column"), [
    ("/features", "views", "views", "name"),
    ("/services", "services", "services", "name"),
    ("/entities", "entities", "entities", "name"),
    ("/models", "models", "models", "name"),
    ("/deployments", "deployments", "deployments", "name"),
])
async def test_twin_rows_are_the_table_rows(client: httpx.AsyncClient, page: str, table: str,
                                            key: str, column: str) -> None:
    twin = (await client.get(page + ".json")).json()[key]
    cells = _cells((await client.get(page)).text, table)
    assert [row[0] for row in cells] == [str(item[column]) for item in twin]
    assert twin, "the fixture has something to list"


async def test_hostile_strings_are_shown_escaped(client: httpx.AsyncClient) -> None:
    r = await client.get("/features/hostile_view")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    j = (await client.get("/features/hostile_view.json")).json()
    assert j["description"] == XSS and j["owner"] == XSS and j["tags"] == {"team": XSS}
    m = await client.get("/models/clf/1")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in m.text and XSS not in m.text


async def test_json_twin_numbers_match_the_table(client: httpx.AsyncClient) -> None:
    j = (await client.get("/models/clf.json?sort=auc&order=desc")).json()
    assert [v["version"] for v in j["versions"]] == [3, 2, 1]
    page = (await client.get("/models/clf?sort=auc&order=desc")).text
    rows = re.findall(r'<th scope="row"><a href="/models/clf/(\d+)">', page)
    assert [int(x) for x in rows] == [3, 2, 1]
    for v in j["versions"]:
        assert f"{v['metrics']['auc']:.4f}".rstrip("0") in page


async def test_materializations_per_store_without_passwords(client: httpx.AsyncClient) -> None:
    fresh = (await client.get("/features/account_profile.json")).json()["freshness"]
    stores = [s["store"] for s in fresh["per_store"]]
    assert len(stores) == 2 and "redis://:***@10.0.0.9:6379/0" in stores
    page = (await client.get("/features/account_profile")).text
    assert "redis://:***@10.0.0.9:6379/0" in page


async def test_secrets_are_masked(client: httpx.AsyncClient) -> None:
    j = (await client.get("/deployments/fraud.json")).json()
    assert j["log_sink"] is not None and SECRET not in j["log_sink"]
    assert "***" in j["log_sink"]


async def test_unknown_page_and_name(client: httpx.AsyncClient) -> None:
    r = await client.get("/features/nope")
    assert r.status_code == 404
    assert "no feature view named 'nope'" in html.unescape(r.text)
    r = await client.get("/models/..%2F..%2Fetc.json")  # never a path on disk
    assert r.status_code == 404
    r = await client.get("/models/.versions.json")
    assert r.status_code == 400 and "model name '.versions' is not valid" in r.json()["error"]
    r = await client.get("/nothing.json")
    assert r.status_code == 404 and "error" in r.json()
    r = await client.post("/features.json", data={})
    assert r.status_code == 405 and "accepts GET only" in r.json()["error"]


async def test_bad_query_is_a_clear_error(client: httpx.AsyncClient) -> None:
    r = await client.get("/models/clf.json?after=garbage")
    assert r.status_code == 400 and "cursor" in r.json()["error"]
    r = await client.get("/models/clf.json?limit=100000")
    assert r.status_code == 400 and "limit" in r.json()["error"]
    r = await client.get("/models/clf.json?sort=nope")
    assert r.status_code == 400 and "no metric 'nope'" in r.json()["error"]
    r = await client.get("/features/account_profile.json?k.account_id=abc")
    assert r.status_code == 400 and "not a Int64" in r.json()["error"]


async def test_pipeline_run_page(client: httpx.AsyncClient) -> None:
    from tests.unit.console.conftest import CONFUSION, RUN_ID

    twin = (await client.get(f"/pipelines/{RUN_ID}.json")).json()
    assert twin["classification"]["matrix"] == CONFUSION
    assert twin["model"] == {"name": "clf", "version": 3}
    assert [t["state"] for t in twin["tasks"]] == ["CACHED", "SUCCEEDED", "SUCCEEDED",
                                                     "SUCCEEDED", "SKIPPED"]
    page = (await client.get(f"/pipelines/{RUN_ID}")).text
    cells = re.findall(r'class="cell" data-row="(\d)" data-col="(\d)">([\d.]+)<', page)
    assert {(int(r), int(c)): float(v) for r, c, v in cells} == {
        (i, j): CONFUSION[i][j] for i in range(2) for j in range(2)}
    assert "ROC curve (AUC" in page and 'data-state="SKIPPED"' in page
    runs = (await client.get("/pipelines.json")).json()
    assert [r["id"] for r in runs["runs"]] == [RUN_ID]
    assert runs["runs"][0]["metrics"]["evaluate.auc"] == 0.91
    r = await client.get("/pipelines/..%2Fetc.json")
    assert r.status_code == 404
    r = await client.get("/pipelines/not-a-run.json")
    assert r.status_code == 400 and "is not a run id" in r.json()["error"]


async def test_promote_a_runs_model_to_a_canary(client: httpx.AsyncClient) -> None:
    from tests.unit.console.conftest import RUN_ID

    page = (await client.get(f"/pipelines/{RUN_ID}")).text
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
    r = await client.post(f"/pipelines/{RUN_ID}/promote", data={
        "csrf_token": token, "deployment": "fraud", "canary_percent": "20"})
    assert r.status_code == 303, r.text
    spec = (await client.get("/deployments/fraud.json")).json()
    assert spec["canary"] == {"version": 3, "percent": 20.0}
    r = await client.post(f"/pipelines/{RUN_ID}/promote", data={
        "csrf_token": token, "deployment": "fraud", "canary_percent": "500"})
    assert r.status_code == 400 and "between 0 and 100" in html.unescape(r.text)
    token_ok = {"csrf_token": token}
    assert (await client.post("/deployments/fraud/clear-canary", data=token_ok)
            ).status_code == 303


async def test_stream_lag_shows_on_the_view(client: httpx.AsyncClient, repo: object) -> None:
    from pathlib import Path

    from tureen.streaming.status import ViewStatus, write_status

    assert isinstance(repo, Path)
    write_status(repo, "txn_stream", [ViewStatus(
        view="hostile_view", source="txn_stream", source_kind="kafka", topic="txns",
        state="running", lag_messages=12, lag_seconds=0.25, rows_per_second=1500.0)])
    twin = (await client.get("/features/hostile_view.json")).json()
    stream = twin["freshness"]["stream"]
    assert stream["lag_messages"] == 12 and stream["state"] == "running"
    page = (await client.get("/features/hostile_view")).text
    assert "running; lag 250.0 ms (12 messages), 1,500 rows/s" in page
    rows = (await client.get("/features.json?q=hostile")).json()["views"]
    assert rows[0]["stream_lag_seconds"] == 0.25


async def test_a_version_links_the_run_that_registered_it(client: httpx.AsyncClient) -> None:
    from tests.unit.console.conftest import RUN_ID

    assert (await client.get("/models/clf/3.json")).json()["pipeline_run"] == RUN_ID
    assert (await client.get("/models/clf/2.json")).json()["pipeline_run"] is None
    assert f'href="/pipelines/{RUN_ID}"' in (await client.get("/models/clf/3")).text


async def test_a_running_run_streams_until_it_ends(client: httpx.AsyncClient,
                                                   repo: object) -> None:
    import asyncio
    import json
    from pathlib import Path

    from tureen.pipelines import RunState, RunStore

    assert isinstance(repo, Path)
    store = RunStore.for_repo(repo)
    base = store.get("20261206-101500-3f2a1c")
    running = base.model_copy(update={"id": "20261206-111500-aaaaaa",
                                      "state": RunState.RUNNING})
    store.create(running)
    page = (await client.get(f"/pipelines/{running.id}")).text
    assert f'data-sse-run="/pipelines/{running.id}/stream"' in page

    async def finish() -> None:
        await asyncio.sleep(1.5)
        store.save(running.model_copy(update={"state": RunState.SUCCEEDED}))

    task = asyncio.create_task(finish())
    r = await client.get(f"/pipelines/{running.id}/stream")
    await task
    events = [(e.split("\n")[0][len("event: "):], json.loads(e.split("data: ", 1)[1]))
              for e in r.text.split("\n\n") if e.startswith("event: ")]
    states = [d["status"] for kind, d in events if kind == "run"]
    assert states[0] == "RUNNING" and states[-1] == "SUCCEEDED"
    assert events[-1] == ("end", {"status": "SUCCEEDED"})
    assert "<svg" in events[0][1]["dag_svg"]


@pytest.mark.parametrize("path", [
    "/features/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "/features/%3Cscript%3Ealert(1)%3C/script%3E",
    "/models/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "/features?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "/deployments/fraud/logs?request_id=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
])
async def test_a_feature_named_script_is_shown_as_text(client: httpx.AsyncClient,
                                                       path: str) -> None:
    """Names typed into the URL (a feature called <script>alert(1)</script>) come back in
    error messages and filled-in filters: always escaped, never markup."""
    r = await client.get(path)
    assert XSS not in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text or \
        "&lt;script&gt;alert(1)&lt;" in r.text
