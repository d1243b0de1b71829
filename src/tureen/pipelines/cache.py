"""Task caching for local runs, keyed on component code, inputs and the data snapshot.

The key of a task is the sha256 of:

- the component: its interface and its executor (command, arguments — so the function's
  source — and environment variables; not the image or resources, which a local run ignores);
- its input parameter values, typed;
- its input artifacts by content (the digest the producing task recorded), falling back to
  URI and metadata for artifacts that are not local files;
- the data snapshot, for tasks that read the feature store (tureen's training-set step):
  registry version, entity rows and source files, so changed data is never served from cache.

Entries live in ``<repo>/data/pipeline_cache/``; an entry points at the artifacts of the run
that produced it and is a miss once they are gone. Every lookup returns a reason: a hit names
the run it reuses, a miss says what changed since this task's last cached run (code, which
inputs, which artifacts, the snapshot) or that there was none.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tureen.pipelines.records import CacheInfo, TaskIO
from tureen.pipelines.runs import write_atomic
from tureen.pipelines.spec import canonical

CACHE_DIR = Path("data") / "pipeline_cache"
_SHOW = 60


def _h(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()


def _short(v: Any) -> str:
    text = json.dumps(v, default=str)
    return text if len(text) <= _SHOW else text[:_SHOW - 3] + "..."


@dataclass(frozen=True)
class KeyParts:
    component: str  # digest of interface + executor
    params: dict[str, Any]
    artifacts: dict[str, list[str]]  # input name -> content digests (or uri/metadata digests)
    snapshot: dict[str, Any] | None

    @property
    def key(self) -> str:
        return _h({"v": 1, "component": self.component, "params": self.params,
                   "artifacts": self.artifacts, "snapshot": self.snapshot})

    def to_dict(self) -> dict[str, Any]:
        return {"component": self.component, "params": self.params,
                "artifacts": self.artifacts, "snapshot": self.snapshot}


def component_digest(component: dict[str, Any], executor: dict[str, Any]) -> str:
    iface = {k: component.get(k) for k in ("inputDefinitions", "outputDefinitions")}
    ex = json.loads(json.dumps(executor))
    if isinstance(ex.get("container"), dict):  # what a local run ignores changes nothing
        ex["container"].pop("resources", None)
        ex["container"].pop("image", None)
    return _h({"interface": iface, "executor": ex})


def artifact_identity(a: dict[str, Any]) -> str:
    if a.get("digest"):
        return str(a["digest"])
    return "uri:" + _h({"uri": a.get("uri"), "metadata": a.get("metadata"),
                        "type": a.get("type")})


def _why_changed(old: dict[str, Any], new: KeyParts) -> str:
    reasons = []
    if old.get("component") != new.component:
        reasons.append("component code or executor changed")
    oldp = old.get("params") or {}
    changed = [k for k in sorted(set(oldp) | set(new.params)) if oldp.get(k) != new.params.get(k)]
    if changed:
        reasons.append("inputs changed: " + ", ".join(
            f"{k} {_short(oldp.get(k))} → {_short(new.params.get(k))}" for k in changed[:5]))
    olda = old.get("artifacts") or {}
    arts = [k for k in sorted(set(olda) | set(new.artifacts))
            if olda.get(k) != new.artifacts.get(k)]
    if arts:
        reasons.append("input artifacts changed: " + ", ".join(arts))
    olds = old.get("snapshot")
    if olds != new.snapshot:
        if isinstance(olds, dict) and isinstance(new.snapshot, dict):
            keys = [k for k in sorted(set(olds) | set(new.snapshot))
                    if olds.get(k) != new.snapshot.get(k)]
            reasons.append("data snapshot changed: " + ", ".join(
                f"{k} {_short(olds.get(k))} → {_short(new.snapshot.get(k))}" for k in keys[:4]))
        else:
            reasons.append("data snapshot changed")
    return "; ".join(reasons)


class TaskCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def for_repo(cls, repo: str | Path) -> TaskCache:
        return cls(Path(repo).resolve() / CACHE_DIR)

    def _entry(self, key: str) -> Path:
        return self.root / "entries" / f"{key}.json"

    def _last(self, identity: str) -> Path:
        return self.root / "tasks" / f"{_h(identity)[:32]}.json"

    def lookup(self, identity: str, parts: KeyParts, task_id: str = ""
               ) -> tuple[TaskIO | None, CacheInfo]:
        """(outputs, info) — outputs is None on a miss. ``identity``: pipeline/task path."""
        key = parts.key
        path = self._entry(key)
        try:
            entry = json.loads(path.read_text())
            outputs = TaskIO.model_validate(entry["outputs"])
        except FileNotFoundError:
            entry = None
        except (ValueError, KeyError, ValidationError):
            return None, CacheInfo(hit=False, key=key,
                                   reason="cache entry unreadable; running again")
        if entry is not None:
            gone = [a.uri for arts in outputs.artifacts.values() for a in arts
                    if a.digest and a.uri and "://" not in a.uri and not Path(a.uri).exists()]
            if gone:
                return None, CacheInfo(hit=False, key=key, reason=(
                    f"cached outputs of run {entry.get('run_id')} are gone ({gone[0]})"))
            src_task = entry.get("task_id")
            other = f" (task {src_task})" if src_task and src_task != task_id else ""
            return outputs, CacheInfo(
                hit=True, key=key, source_run=entry.get("run_id"), source_task=src_task,
                reason=f"same code, inputs and data as run {entry.get('run_id')}{other}")
        try:
            old = json.loads(self._last(identity).read_text())
        except (FileNotFoundError, ValueError):
            old = None
        if not isinstance(old, dict):
            reason = "no cached result yet for this task"
        else:
            reason = _why_changed(old, parts) or "no cached result for these inputs"
        return None, CacheInfo(hit=False, key=key, reason=reason)

    def store(self, identity: str, parts: KeyParts, outputs: TaskIO, run_id: str,
              task_id: str) -> None:
        for sub in ("entries", "tasks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        entry = {"key": parts.key, "run_id": run_id, "task_id": task_id,
                 "created_at": datetime.now(UTC).isoformat(),
                 "outputs": outputs.model_dump(mode="json")}
        write_atomic(self._entry(parts.key), json.dumps(entry))
        write_atomic(self._last(identity), json.dumps(parts.to_dict(), default=str))

    def clear(self) -> int:
        """Delete every entry; returns how many there were."""
        n = 0
        for sub in ("entries", "tasks"):
            d = self.root / sub
            if d.is_dir():
                for p in d.glob("*.json"):
                    p.unlink(missing_ok=True)
                    n += sub == "entries"
        return n
