"""The console's vendored CSS and JS, served from the package (no CDN: works offline).

Files are read once; each URL carries the file's content hash, so browsers cache them for a
year and a new release is fetched at once. Only files shipped in ``static/`` are served.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from tureen.console.http import Response

_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".svg": "image/svg+xml", ".txt": "text/plain; charset=utf-8"}


class StaticFiles:
    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str, str]] = {}
        root = resources.files("tureen.console") / "static"
        for entry in root.iterdir():
            name = entry.name
            suffix = name[name.rfind("."):]
            if entry.is_file() and suffix in _TYPES:
                data = entry.read_bytes()
                digest = hashlib.sha256(data).hexdigest()[:12]
                self.files[name] = (data, _TYPES[suffix], digest)

    def url(self, base: str, name: str) -> str:
        return f"{base}/static/{name}?v={self.files[name][2]}"

    def get(self, name: str, headers: dict[str, str]) -> Response:
        found = self.files.get(name)
        if found is None:
            return Response(404, b"no such file", "text/plain; charset=utf-8")
        data, ctype, digest = found
        etag = f'"{digest}"'
        cache = [("etag", etag), ("cache-control", "public, max-age=31536000, immutable")]
        if headers.get("if-none-match") == etag:
            return Response(304, b"", ctype, cache)
        return Response(200, data, ctype, cache)
