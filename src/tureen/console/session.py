"""Who is using the console: the server's authentication, for a browser.

With auth on, every console request is authenticated by ``tureen.auth``'s guard (the same
tokens, OIDC and roles as every other surface) before a view runs; the services then check
the caller's role (deployment actions need ``deploy``). A browser cannot attach an
``Authorization`` header to a link, so the console also takes the token from its own
session cookie: ``/login`` checks a pasted token and stores it in an ``HttpOnly;
SameSite=Strict`` cookie (``Secure`` over HTTPS), ``/logout`` clears it. Scripts send
``Authorization: Bearer ...`` as to any other route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tureen.auth.authn import Credentials, Pending
from tureen.auth.guard import PROTECTED, AuthGuard, Bound

if TYPE_CHECKING:
    from tureen.console.http import ConsoleRequest

COOKIE = "tureen_session"
__all__ = ["COOKIE", "Credentials", "Pending", "begin", "cookie", "credentials", "is_public",
           "safe_next"]


def credentials(req: ConsoleRequest) -> Credentials:
    header = req.headers.get("authorization")
    if header:
        return Credentials(authorization=header)
    token = req.cookies.get(COOKIE)
    return Credentials(authorization=f"Bearer {token}" if token else None)


def is_public(path: str) -> bool:
    return path == "/login" or path.startswith("/static/")


def safe_next(target: str) -> str:
    """Where to go after signing in: a path of this console only (no open redirect)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def cookie(token: str, base: str, secure: bool, max_age: int | None = None) -> str:
    attrs = [f"{COOKIE}={token}", f"Path={base or '/'}", "HttpOnly", "SameSite=Strict"]
    if secure:
        attrs.append("Secure")
    if max_age is not None:
        attrs.append(f"Max-Age={max_age}")
    return "; ".join(attrs)


async def begin(guard: AuthGuard, req: ConsoleRequest) -> Bound:
    """Authenticate the request (raises UnauthenticatedError) and bind its caller."""
    bound = await guard.begin_async(PROTECTED, credentials(req))
    req.identity = bound.ctx.identity
    return bound
