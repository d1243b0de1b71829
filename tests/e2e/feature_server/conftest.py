"""A materialized fraud repo served by ``tureen serve-features`` (one per module)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.feature_server.servers import Server, make_repo, start


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("fs") / "fraud")


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[Server]:
    s = start(["serve-features", "--repo", str(repo), "--host", "127.0.0.1"],
              repo / "server.log")
    yield s
    assert s.stop() == 0, s.log.read_text()
