"""One behaviour suite for every RegistryStore: file, SQL on SQLite, SQL on PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.services import require_postgres

from tureen.backends import load_backend
from tureen.config import BackendConfig
from tureen.errors import ConflictError
from tureen.registry.protocol import RegistryStore

WORKER = Path(__file__).with_name("race_worker.py")


@dataclass
class Backend:
    config: dict[str, Any]
    repo: Path
    project: str

    def open(self) -> RegistryStore:
        store: RegistryStore = load_backend(
            "registry", BackendConfig(**self.config), self.repo, self.project
        )
        return store


def _postgres_url() -> str:
    return require_postgres()


BACKENDS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "file": lambda tmp: {"type": "file", "path": str(tmp / "registry.json")},
    "sqlite": lambda tmp: {"type": "sql", "url": "sqlite:///registry.db"},
    "postgresql": lambda tmp: {"type": "sql", "url": _postgres_url()},
}


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "postgresql":
        request.applymarker(pytest.mark.services)
    b = Backend(BACKENDS[request.param](tmp_path), tmp_path, f"p_{uuid.uuid4().hex[:12]}")
    yield b
    store = b.open()
    store.delete()
    close = getattr(store, "close", None)
    if close is not None:
        close()


def _doc(**extra: Any) -> dict[str, Any]:
    return {"format_version": 1, "version": 0, "entities": [], "extra": dict(extra)}


def test_empty_store_loads_none(backend: Backend) -> None:
    store = backend.open()
    assert store.load() is None
    assert store.history() == []


def test_round_trip_and_version_increments(backend: Backend) -> None:
    store = backend.open()
    store.save(_doc(a=1, nested={"x": [1, 2.5, "s", None]}), 0, "first")
    loaded = store.load()
    assert loaded is not None
    assert loaded["version"] == 1
    assert loaded["extra"] == {"a": 1, "nested": {"x": [1, 2.5, "s", None]}}
    store.save({**loaded, "extra": {"a": 2}}, 1, "second")
    again = backend.open().load()  # a fresh store (another server) sees the same document
    assert again is not None
    assert again["version"] == 2
    assert again["extra"] == {"a": 2}


def test_history_one_record_per_save_oldest_first(backend: Backend) -> None:
    store = backend.open()
    for v, summary in enumerate(["create", "add view", "drop view"]):
        store.save(_doc(step=v), v, summary)
    hist = store.history()
    assert [h["version"] for h in hist] == [1, 2, 3]
    assert [h["summary"] for h in hist] == ["create", "add view", "drop view"]
    assert all(isinstance(h["at"], str) and h["at"] for h in hist)


def test_stale_expected_version_conflicts_and_stores_nothing(backend: Backend) -> None:
    store = backend.open()
    store.save(_doc(owner="a"), 0, "a")
    store.save(_doc(owner="b"), 1, "b")
    with pytest.raises(ConflictError, match="another apply won"):
        store.save(_doc(owner="stale"), 1, "stale")
    with pytest.raises(ConflictError):
        store.save(_doc(owner="ahead"), 5, "ahead")
    loaded = store.load()
    assert loaded is not None
    assert loaded["version"] == 2
    assert loaded["extra"] == {"owner": "b"}
    assert [h["summary"] for h in store.history()] == ["a", "b"]


def test_second_first_save_conflicts(backend: Backend) -> None:
    backend.open().save(_doc(owner="first"), 0, "first")
    with pytest.raises(ConflictError):
        backend.open().save(_doc(owner="second"), 0, "second")
    loaded = backend.open().load()
    assert loaded is not None and loaded["extra"] == {"owner": "first"}


def test_delete_forgets_document_and_history(backend: Backend) -> None:
    store = backend.open()
    store.save(_doc(), 0, "x")
    store.delete()
    assert store.load() is None
    assert store.history() == []
    store.save(_doc(), 0, "recreated")  # starts over at version 1
    loaded = store.load()
    assert loaded is not None and loaded["version"] == 1


def test_projects_are_isolated(backend: Backend) -> None:
    config = dict(backend.config)
    if config["type"] == "file":  # a file registry holds one project: another file
        config["path"] = str(backend.repo / "other-registry.json")
    other = Backend(config, backend.repo, backend.project + "_other")
    backend.open().save(_doc(who="one"), 0, "one")
    assert other.open().load() is None
    other.open().save(_doc(who="two"), 0, "two")
    one, two = backend.open().load(), other.open().load()
    assert one is not None and two is not None
    assert (one["extra"], two["extra"]) == ({"who": "one"}, {"who": "two"})
    other.open().delete()
    assert backend.open().load() is not None


@pytest.mark.slow
@pytest.mark.parametrize("initial", [0, 1], ids=["first-save", "update"])
def test_two_processes_racing_lose_nothing(backend: Backend, initial: int) -> None:
    if initial:
        backend.open().save(_doc(), 0, "base")
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(backend.config), str(backend.repo),
             backend.project, key],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for key in ("alice", "bob")
    ]
    try:
        # Both processes read the same version before either writes: one of them must lose.
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            if not line:  # the worker died: show why instead of an empty line
                p.kill()
                pytest.fail(f"race worker exited early: {p.communicate()[1]}")
            assert line.split() == ["ready", str(initial)]
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()  # reap and close the pipes, whatever happened
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    lines = [out.split("\n") for out, _ in outputs]
    conflicts = sum(ln.count("conflict") for ln in lines)
    assert conflicts == 1, lines  # exactly one loser, told so, never silently overwritten
    saved = sorted(int(next(x for x in ln if x.startswith("saved")).split()[1]) for ln in lines)
    assert saved == [initial + 1, initial + 2]
    final = backend.open().load()
    assert final is not None
    assert final["version"] == initial + 2
    assert final["extra"] == {"alice": True, "bob": True}
    assert [h["version"] for h in backend.open().history()][-2:] == [initial + 1, initial + 2]
