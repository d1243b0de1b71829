"""Reach the real services integration tests need, or skip (laptop) / fail (CI) clearly."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

REQUIRED = os.environ.get("TUREEN_REQUIRE_SERVICES") == "1"

POSTGRES_URL = os.environ.get(
    "TUREEN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TUREEN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _require(name: str, host: str, port: int, how: str) -> None:
    if _reachable(host, port):
        return
    msg = f"{name} is not reachable at {host}:{port}; {how}"
    if REQUIRED:
        pytest.fail(msg + " (TUREEN_REQUIRE_SERVICES=1, so this is a failure)")
    pytest.skip(msg)


def require_postgres() -> str:
    _require("PostgreSQL", "127.0.0.1", 5432,
             "start it or set TUREEN_TEST_POSTGRES_URL to run the SQL registry tests.")
    return POSTGRES_URL


def require_redis() -> str:
    _require("Redis", "127.0.0.1", 6379,
             "start redis-server or set TUREEN_TEST_REDIS_URL to run the Redis tests.")
    return REDIS_URL


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
