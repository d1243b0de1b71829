"""tureen's own gRPC server (``start_h2_server``) on 127.0.0.1 over a real DataPlane, run on
its own uvloop event loop in a thread, so that blocking clients (grpcio, tritonclient) can
call it from the test."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import joblib
import numpy as np
import pytest
import uvloop
from sklearn.linear_model import LogisticRegression
from tests.e2e.serving.conftest import ECHO

from tureen.serving import DataPlane, Model, ModelRepository, VersionPolicy
from tureen.transports.grpc.h2server import H2Server, start_h2_server

N_FEATURES = 10
T = TypeVar("T")

SLOW = '''
import time
import numpy as np
from tureen.serving import Model


class Slow(Model):
    """Sleeps for as many seconds as its one input value says."""

    def load(self):
        self.ready = True
        return True

    def predict(self, payload, headers=None):
        x = self.decode(payload)
        time.sleep(float(np.asarray(x).reshape(-1)[0]))
        return x
'''


class Seer(Model):
    """Returns its input and records the headers it saw."""

    def __init__(self) -> None:
        super().__init__("seer", "1")
        self.seen: list[dict[str, str]] = []

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        self.seen.append(dict(headers or {}))
        return self.decode(payload)


def train(seed: int) -> LogisticRegression:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, N_FEATURES)).astype(np.float32)
    y = (x @ rng.normal(size=N_FEATURES) > 0).astype(np.int64)
    return LogisticRegression().fit(x, y)


def build_repo(root: Path) -> Path:
    for version, seed in (("1", 1), ("2", 2)):
        (root / "lr" / version).mkdir(parents=True)
        joblib.dump(train(seed), root / "lr" / version / "model.joblib")
    for name, code in (("echo", ECHO), ("slow", SLOW), ("spare", ECHO)):
        (root / name / "1").mkdir(parents=True)
        (root / name / "1" / "model.py").write_text(code)
    return root


class Running:
    """A server on a loop in a thread; ``run`` executes a coroutine there. ``not_ready``
    registers a model that never loads (and so makes the server not ready)."""

    def __init__(self, repo: Path, max_message_bytes: int = 256 << 20,
                 not_ready: bool = False) -> None:
        self.repo = repo
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.seer = Seer()
        self.not_ready = not_ready
        self.dp, self.server = self.run(self._start(max_message_bytes))
        self.stopped = False

    async def _start(self, max_message_bytes: int) -> tuple[DataPlane, H2Server]:
        dp = DataPlane(ModelRepository(self.repo, VersionPolicy.parse("all")), model_control=True)
        await dp.repository.load_all()
        self.seer.load()
        dp.register(self.seer)
        if self.not_ready:
            dp.register(Model("notready", "1"))  # registered, never loaded
        server = await start_h2_server(dp, "127.0.0.1", 0, max_message_bytes=max_message_bytes)
        return dp, server

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        async def wrap() -> T:
            return fn()

        return self.run(wrap())

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def streams(self) -> int:
        return self.call(lambda: sum(len(c.streams) for c in self.server.service.connections))

    def wait_for(self, what: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not reach the expected state")
            time.sleep(0.02)

    def stop(self, grace: float = 5.0) -> None:
        if not self.stopped:
            self.stopped = True
            self.run(self.server.stop(grace))
            self.dp.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_repo(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def server(repo: Path) -> Iterator[Running]:
    s = Running(repo)
    yield s
    s.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Running]:
    s = Running(build_repo(tmp_path / "models"), max_message_bytes=4096, not_ready=True)
    yield s
    s.stop()
