"""The default registry store: one JSON file in the repo, replaced atomically.

A save writes a temporary file in the same folder, fsyncs it and renames it over the old
one, so readers see the old or the new registry and never a half-written one. An exclusive
lock file serializes writers across processes; the version check inside the lock gives the
same optimistic-concurrency contract as the SQL store. History is appended to
``<name>.history.jsonl`` beside it.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tureen.backend_options import FileRegistryOptions
from tureen.errors import ConflictError, RegistryCorruptError


class FileRegistryStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._history = path.with_name(path.name + ".history.jsonl")
        self._lock = path.with_name(path.name + ".lock")
        self._uses = path.with_name(path.name + ".token-uses.json")

    @classmethod
    def from_config(
        cls, options: Mapping[str, Any], repo_path: Path, project: str
    ) -> FileRegistryStore:
        opts = FileRegistryOptions.model_validate(dict(options))
        p = Path(opts.path).expanduser()
        return cls(p if p.is_absolute() else repo_path / p)

    def describe(self) -> str:
        return str(self.path)

    def load(self) -> dict[str, Any] | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or "version" not in doc:
                raise ValueError("not a registry document")
            return doc
        except ValueError as exc:
            raise RegistryCorruptError(
                f"the registry file {self.path} is not a valid registry ({exc}). It was left "
                f"untouched. Restore it from a backup, or move it away and run `tureen apply` "
                "to rebuild it from the definitions (materialization records would be lost)."
            ) from exc

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock, "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def save(self, document: Mapping[str, Any], expected_version: int, summary: str) -> None:
        with self._locked():
            current = self.load()
            current_version = int(current["version"]) if current else 0
            if current_version != expected_version:
                raise ConflictError(
                    f"the registry at {self.path} changed while you worked (now version "
                    f"{current_version}, expected {expected_version}): another apply won. "
                    "Run the command again to apply on top of it."
                )
            doc = dict(document)
            doc["version"] = expected_version + 1
            data = json.dumps(doc, indent=1, sort_keys=False).encode()
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".registry-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            record = {"version": doc["version"], "at": datetime.now(UTC).isoformat(),
                      "summary": summary}
            with open(self._history, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def history(self) -> list[dict[str, Any]]:
        try:
            lines = self._history.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a torn last line from a crash loses one history record, not the registry
        return out

    def token_uses(self) -> dict[str, str]:
        """When each API token was last used (ISO timestamps), kept beside the registry."""
        try:
            doc = json.loads(self._uses.read_bytes())
        except (FileNotFoundError, ValueError):
            return {}
        return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}

    def record_token_uses(self, uses: Mapping[str, str]) -> None:
        with self._locked():
            merged = self.token_uses()
            for k, v in uses.items():
                merged[k] = max(v, merged.get(k, v))
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".token-uses-",
                                       suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as fh:
                    json.dump(merged, fh)
                os.replace(tmp, self._uses)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def delete(self) -> None:
        with self._locked():
            for p in (self.path, self._history, self._uses):
                p.unlink(missing_ok=True)
