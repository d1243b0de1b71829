"""With authentication on, the console asks who you are and the services decide what you
may do: a reader sees pages, only a deployer changes deployments; the browser signs in with
a token kept in an HttpOnly cookie."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tureen.auth import access as context
from tureen.auth.authn import Authenticator
from tureen.auth.guard import AuthGuard
from tureen.auth.settings import AuthSettings
from tureen.auth.tokens import Tokens
from tureen.console import ConsoleApp, ConsoleServices


@pytest.fixture
async def secured(repo: Path, monkeypatch: pytest.MonkeyPatch
                  ) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    monkeypatch.setattr(context, "_enforcing", False)
    svc = ConsoleServices(repo)
    tokens = Tokens(svc.features.registry)
    made = {role: tokens.create([role], name=f"console-test-{role}")[0]
            for role in ("reader", "deployer")}
    svc.guard = AuthGuard(Authenticator(AuthSettings(type=["token"]), svc.features.registry),
                          project=svc.project)
    transport = httpx.ASGITransport(app=ConsoleApp(svc))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://c.test") as c:
            yield c, made
    finally:
        monkeypatch.setattr(context, "_enforcing", False)
        for rec in tokens.list():
            if rec.name.startswith("console-test-"):
                tokens.revoke(rec.id)


async def _sign_in(c: httpx.AsyncClient, token: str) -> str:
    page = (await c.get("/login")).text
    csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
    r = await c.post("/login", data={"csrf_token": csrf, "token": token, "next": "/deployments"})
    assert r.status_code == 303 and r.headers["location"] == "/deployments"
    assert "HttpOnly" in r.headers["set-cookie"] and "SameSite=Strict" in r.headers["set-cookie"]
    return csrf


async def test_no_credentials_sends_a_browser_to_sign_in(secured: tuple[httpx.AsyncClient,
                                                                         dict[str, str]]) -> None:
    c, _ = secured
    r = await c.get("/deployments/fraud?x=1")
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Fdeployments%2Ffraud%3Fx%3D1"
    r = await c.get("/deployments.json")
    assert r.status_code == 401 and "authentication required" in r.json()["error"]
    assert (await c.get("/static/console.css")).status_code == 200  # assets stay public
    r = await c.get("/deployments.json", headers={"authorization": "Bearer tureen_nope"})
    assert r.status_code == 401


async def test_a_bad_token_is_refused_at_sign_in(secured: tuple[httpx.AsyncClient,
                                                                dict[str, str]]) -> None:
    c, _ = secured
    page = (await c.get("/login")).text
    csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
    r = await c.post("/login", data={"csrf_token": csrf, "token": "tureen_abc_def"})
    assert r.status_code == 401 and 'id="err-token"' in r.text
    r = await c.post("/login", data={"csrf_token": csrf, "token": "x",
                                     "next": "//evil.example/"})
    assert "set-cookie" not in r.headers


async def test_roles_decide_in_the_services(secured: tuple[httpx.AsyncClient, dict[str, str]],
                                            repo: Path) -> None:
    c, made = secured
    assert (await c.get("/features.json", headers={
        "authorization": f"Bearer {made['reader']}"})).status_code == 200
    csrf = await _sign_in(c, made["reader"])
    r = await c.get("/deployments/fraud.json")
    assert r.status_code == 403  # seeing a deployment is the deploy action, like the CLI's
    page = (await c.get("/features")).text  # a page the reader may see: the reader's token
    csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
    r = await c.post("/deployments/fraud/start", data={"csrf_token": csrf})
    assert r.status_code == 403 and "do not allow deploy" in html.unescape(r.text)
    c.cookies.clear()
    csrf = await _sign_in(c, made["deployer"])
    page = (await c.get("/deployments/fraud")).text
    assert "signed in as" in page
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
    r = await c.post("/deployments/fraud/stop", data={"csrf_token": token})
    assert r.status_code == 303, html.unescape(r.text)[:500]
    r = await c.post("/logout", data={"csrf_token": token})
    assert r.status_code == 303 and "Max-Age=0" in r.headers["set-cookie"]
