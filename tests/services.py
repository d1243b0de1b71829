"""Reach the real services integration tests need, or skip (laptop) / fail (CI) clearly."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

REQUIRED = os.environ.get("TUREEN_REQUIRE_SERVICES") == "1"

POSTGRES_URL = os.environ.get(
    "TUREEN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
#: Feast's interpreter for the wire-compatibility tests (its own venv: tureen never imports
#: Feast). ``.ci/run`` creates one and exports this; skipped when there is none.
FEAST_PYTHON = Path(os.environ.get("TUREEN_FEAST_PYTHON", "/work/peers/feast/bin/python"))
REDIS_URL = os.environ.get("TUREEN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _require(name: str, host: str, port: int, how: str) -> None:
    require_service(f"{name} at {host}:{port}", _reachable(host, port), how)


def require_service(name: str, present: bool, how: str) -> None:
    """Skip (laptop) or fail (``TUREEN_REQUIRE_SERVICES=1``) when ``name`` is absent."""
    if present:
        return
    msg = f"{name} is not available; {how}"
    if REQUIRED:
        pytest.fail(msg + " (TUREEN_REQUIRE_SERVICES=1, so this is a failure)")
    pytest.skip(msg)


def require_postgres() -> str:
    _require("PostgreSQL", "127.0.0.1", 5432,
             "start it or set TUREEN_TEST_POSTGRES_URL to run the SQL registry tests.")
    return POSTGRES_URL


def redis_available() -> bool:
    return _reachable("127.0.0.1", 6379)


def require_redis() -> str:
    _require("Redis", "127.0.0.1", 6379,
             "start redis-server or set TUREEN_TEST_REDIS_URL to run the Redis tests.")
    return REDIS_URL


def require_feast() -> Path:
    """Feast's interpreter, or skip: Feast is a peer to compare with, not a service CI must
    have (``.ci/run`` warns when it cannot install it). A ``TUREEN_FEAST_PYTHON`` that points
    nowhere is a mistake, not a skip."""
    if FEAST_PYTHON.exists():
        return FEAST_PYTHON
    if "TUREEN_FEAST_PYTHON" in os.environ:
        pytest.fail(f"TUREEN_FEAST_PYTHON={FEAST_PYTHON} does not exist; fix it or unset it.")
    pytest.skip(f"no Feast interpreter at {FEAST_PYTHON}; run .ci/run once (it creates one) "
                "or set TUREEN_FEAST_PYTHON.")


def require_module(name: str, install: str) -> Any:
    """Import an optional framework, or skip (laptop) / fail (CI) saying how to install it."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        msg = f"{name} is not installed; {install} to run this test."
        if REQUIRED:
            pytest.fail(msg + " (TUREEN_REQUIRE_SERVICES=1, so this is a failure)")
        pytest.skip(msg)


KFP_REQUIRED = os.environ.get("TUREEN_REQUIRE_KFP") == "1"


def require_kfp() -> Any:
    """The Kubeflow Pipelines SDK, or skip (the ``test`` extra installs it; a venv without it,
    a laptop with only the core install, skips): ``.ci/run`` sets ``TUREEN_REQUIRE_KFP=1``, so
    a missing kfp is a failure in CI."""
    import importlib

    try:
        return importlib.import_module("kfp")
    except ImportError:
        msg = ("kfp is not installed; pip install -e '.[test]' (or 'tureen[pipelines]') to "
               "run this test.")
        if KFP_REQUIRED:
            pytest.fail(msg + " (TUREEN_REQUIRE_KFP=1, so this is a failure)")
        pytest.skip(msg)


# Redis key prefixes (``tureen:{project}:``) this test run wrote to the shared Redis. Fixtures
# that write there register their project with ``redis_project`` and purge it on teardown;
# ``tests/integration/conftest.py`` fails the run if any of them still holds a key at the end.
REDIS_PROJECTS: set[str] = set()


def redis_project(project: str) -> str:
    REDIS_PROJECTS.add(project)
    return project


def purge_redis_project(project: str, prefix: str = "tureen") -> None:
    """Delete every key of ``project`` in the shared Redis (tests clean up what they write)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:{project}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.delete(*batch)
                batch = []
        if batch:
            client.delete(*batch)
    finally:
        client.close()
