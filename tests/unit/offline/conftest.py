"""Offline engines under test: every test taking ``engine`` runs once per entry of ENGINES.

Another engine joins the suite by adding a factory here (or, for one needing a service such
as Spark, by importing these test modules from tests/integration with its own ``engine``
fixture). A factory takes the feature repo folder that relative source paths resolve in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tureen.offline.duckdb_engine import DuckDBEngine
from tureen.offline.protocol import OfflineEngine

EngineFactory = Callable[[Path], OfflineEngine]

ENGINES: dict[str, EngineFactory] = {
    "duckdb": lambda repo: DuckDBEngine.from_config({"threads": 2}, repo, "test"),
    # The path of training sets larger than memory: entity rows joined 3 at a time against
    # staged view rows, under a small memory limit that spills into the repo.
    "duckdb-chunked": lambda repo: DuckDBEngine.from_config(
        {"threads": 2, "chunk_rows": 3, "memory_limit": "64MB", "temp_directory": "spill"},
        repo, "test"),
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest, repo: Path) -> Iterator[OfflineEngine]:
    eng = ENGINES[request.param](repo)
    try:
        yield eng
    finally:
        eng.close()
