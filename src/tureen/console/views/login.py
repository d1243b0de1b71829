"""Sign in with a token (kept in an HttpOnly session cookie) and sign out; only when the
server has authentication on."""

from __future__ import annotations

from tureen.console import session
from tureen.console.http import ConsoleRequest, Response
from tureen.console.page import Page, route
from tureen.console.services import ConsoleServices
from tureen.errors import TureenError


def _page(req: ConsoleRequest, svc: ConsoleServices, error: str = "", status: int = 200
          ) -> Page:
    data = {"enabled": svc.guard is not None, "next": session.safe_next(
        req.form.get("next") or req.arg("next") or "/"), "error": error}
    return Page("login.html", data, "Sign in", status)


def login_form(req: ConsoleRequest, svc: ConsoleServices) -> Page:
    return _page(req, svc)


def login(req: ConsoleRequest, svc: ConsoleServices) -> Page | Response:
    guard = svc.guard
    if guard is None:
        return _page(req, svc, "this server has no authentication: nothing to sign in to.", 400)
    token = req.form.get("token", "").strip()
    if not token:
        return _page(req, svc, "paste a token (`tureen token create --role ...` prints one).",
                     400)
    try:
        ident = guard.authenticator.quick(session.Credentials(authorization=f"Bearer {token}"))
    except TureenError as exc:
        return _page(req, svc, str(exc), 401)
    if ident is None or isinstance(ident, session.Pending):
        return _page(req, svc, "that token could not be checked here; send it as "
                     "`Authorization: Bearer ...` instead.", 401)
    target = req.url(session.safe_next(req.form.get("next", "/")))
    secure = req.headers.get("x-forwarded-proto") == "https" or req.scheme == "https"
    return Response(303, b"", "text/plain", [
        ("location", target), ("set-cookie", session.cookie(token, req.base, secure))])


def logout(req: ConsoleRequest, svc: ConsoleServices) -> Response:
    return Response(303, b"", "text/plain", [
        ("location", req.url("/login")),
        ("set-cookie", session.cookie("", req.base, False, max_age=0))])


ROUTES = [
    route("GET", "/login", login_form),
    route("POST", "/login", login),
    route("POST", "/logout", logout),
]
