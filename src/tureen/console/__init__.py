"""The web console: features, models, deployments, logs and pipeline runs in a browser.

Server-rendered pages (Jinja2) with a little vendored JS and CSS shipped in the package —
no frontend build, no CDN. Every page ``/x`` has a JSON twin ``/x.json`` (or ``Accept:
application/json``) built from the same view model. Lists page by key (never by offset) and
filter on the server. Live parts (deployment status, logs) stream over Server-Sent Events.
Write actions are HTML form posts, CSRF-protected, handled by the same services the CLI
calls.

    from tureen.console import console_app
    app = console_app("repo")            # an ASGI app; `tureen serve` mounts it at /console/

``tureen console`` serves it alone at ``/`` (port 8888).
"""

from __future__ import annotations

from pathlib import Path

from tureen.console.app import ConsoleApp
from tureen.console.services import ConsoleServices, Endpoints


def console_app(repo_path: str | Path = ".", endpoints: Endpoints | None = None
                ) -> ConsoleApp:
    return ConsoleApp(ConsoleServices(repo_path, endpoints))


__all__ = ["ConsoleApp", "ConsoleServices", "Endpoints", "console_app"]
