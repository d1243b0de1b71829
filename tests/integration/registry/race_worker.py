"""A separate process applying one registry change, for the concurrency test.

Usage: python race_worker.py BACKEND_JSON REPO PROJECT KEY
Loads the registry, prints ``ready <version>``, waits for a line on stdin, then saves its
change on top of what it loaded. On ConflictError it prints ``conflict``, reloads and retries
(printing ``saved <version>`` when done), so the test sees both the loss and the retry.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tureen.backends import load_backend
from tureen.config import BackendConfig
from tureen.errors import ConflictError


def main() -> None:
    backend, repo, project, key = sys.argv[1:5]
    store = load_backend("registry", BackendConfig(**json.loads(backend)), Path(repo), project)
    doc = store.load() or {"version": 0, "extra": {}}
    print("ready", doc["version"], flush=True)
    sys.stdin.readline()
    while True:
        doc.setdefault("extra", {})[key] = True
        try:
            store.save(doc, int(doc["version"]), f"set {key}")
        except ConflictError:
            print("conflict", flush=True)
            doc = store.load() or {"version": 0, "extra": {}}
            continue
        print("saved", int(doc["version"]) + 1, flush=True)
        return


if __name__ == "__main__":
    main()
