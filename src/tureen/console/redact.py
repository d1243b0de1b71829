"""What pages may show of a URL or setting: passwords, tokens and keys are masked."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
_SECRET_WORDS = re.compile(r"pass|secret|token|key|credential|auth|sig", re.IGNORECASE)


def redact_url(url: str | None) -> str | None:
    """``redis://user:pw@host/0?password=x`` → ``redis://user:***@host/0?password=***``."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if colon else f"{user}@{hostport}"
    query = parts.query
    if query:
        pairs = [(k, MASK if _SECRET_WORDS.search(k) else v)
                 for k, v in parse_qsl(query, keep_blank_values=True)]
        query = urlencode(pairs, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Backend options for display: secret-looking keys masked, URLs redacted, nested
    mappings (``storage_options``, ``conf``) reduced to their keys."""
    out: dict[str, Any] = {}
    for k, v in options.items():
        if _SECRET_WORDS.search(str(k)):
            out[k] = MASK
        elif isinstance(v, Mapping):
            out[k] = {str(kk): MASK for kk in v}
        elif isinstance(v, str) and "://" in v:
            out[k] = redact_url(v)
        elif isinstance(v, list):
            out[k] = [redact_url(x) if isinstance(x, str) and "://" in x else x for x in v]
        else:
            out[k] = v
    return out
