"""CSRF protection for the console's forms: a signed double-submit token plus an origin check.

The browser holds a random token in an ``HttpOnly; SameSite=Strict`` cookie; every form
carries ``HMAC(key, token)``. A post is accepted only when the field matches the cookie's
signature and, when the browser says where the post came from (``Origin`` or
``Sec-Fetch-Site``), it came from this site. The key lives in ``.tureen/console.key``
(created once, mode 0600), so every serving worker accepts every other worker's forms.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from tureen.errors import InvalidRequestError

COOKIE = "tureen_csrf"
FIELD = "csrf_token"


class CsrfError(InvalidRequestError):
    """A form post without a valid CSRF token or from another site (HTTP 403)."""


def load_key(repo_path: Path) -> bytes:
    path = repo_path / ".tureen" / "console.key"
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker won the race: use its key
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as f:
        f.write(key.hex())
    return key


class Csrf:
    def __init__(self, key: bytes) -> None:
        self.key = key

    @staticmethod
    def new_cookie() -> str:
        return secrets.token_hex(16)

    def token_for(self, cookie: str, identity: str = "") -> str:
        return hmac.new(self.key, f"{cookie}|{identity}".encode(), hashlib.sha256).hexdigest()

    def check(self, cookie: str | None, field: str | None, headers: dict[str, str],
              identity: str = "") -> None:
        site = headers.get("sec-fetch-site", "")
        if site and site not in ("same-origin", "none"):
            raise CsrfError("this form was posted from another site; use the console's own "
                            "page to make changes.")
        origin = headers.get("origin")
        if origin and origin != "null":
            host = headers.get("host", "")
            if urlsplit(origin).netloc != host:
                raise CsrfError("this form was posted from another origin; use the console's "
                                "own page to make changes.")
        if not cookie or not field or not hmac.compare_digest(
                self.token_for(cookie, identity), field):
            raise CsrfError("the form's security token is missing or expired; reload the page "
                            "and submit again.")
