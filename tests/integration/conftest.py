"""Integration tests share the machine's Redis: whatever a test wrote there under a project it
registered with ``tests.services.redis_project`` is deleted when the test ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.services import REDIS_PROJECTS, purge_redis_project, redis_available


@pytest.fixture(autouse=True)
def _purge_shared_redis() -> Iterator[None]:
    yield
    if not REDIS_PROJECTS:
        return
    projects = sorted(REDIS_PROJECTS)
    REDIS_PROJECTS.clear()
    if redis_available():
        for project in projects:
            purge_redis_project(project)
