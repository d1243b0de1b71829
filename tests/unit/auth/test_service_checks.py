"""Authorization is decided in the services (the SDK, CLI, console and every route share it),
before anything is looked up: a refused caller learns nothing about what exists."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.unit.auth.callers import caller as serving

from tureen.auth.policy import Identity
from tureen.deployments import Deployments
from tureen.errors import NotFoundError, PermissionDeniedError
from tureen.store import FeatureStore


def caller(*roles: str, names: tuple[str, ...] = ()) -> Any:
    return serving(Identity("t", "token", roles, names=names), "p")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "tureen.yaml").write_text("project: p\n")
    return tmp_path


def test_feature_reads_and_writes_are_checked_before_lookup(repo: Path) -> None:
    store = FeatureStore(repo)
    df = pd.DataFrame({"x": [1]})
    with caller("reader"):
        with pytest.raises(NotFoundError):  # allowed: the lookup runs and fails
            store.get_online_features(["nope:f"], [{"k": 1}])
        with pytest.raises(PermissionDeniedError):  # refused before the lookup
            store.push("nope", df)
        with pytest.raises(PermissionDeniedError):
            store.write_to_online_store("nope", df)
        with pytest.raises(PermissionDeniedError):
            store.materialize_incremental(datetime.now(UTC))
        with pytest.raises(PermissionDeniedError):
            store.teardown()
    with caller("predictor"), pytest.raises(PermissionDeniedError):
        store.get_online_features(["nope:f"], [{"k": 1}])
    with caller("writer"), pytest.raises(NotFoundError):
        store.push("nope", df)
    with pytest.raises(NotFoundError):
        store.write_to_online_store("nope", df)


def test_deployments_are_scoped_by_name(repo: Path) -> None:
    deps = Deployments.for_repo(repo)
    with caller("deployer", names=("fraud-*",)):
        assert deps.list() == []
        with pytest.raises(NotFoundError) as exc:
            deps.get("fraud-v1")
        assert "churn" not in str(exc.value)
        with pytest.raises(PermissionDeniedError):
            deps.get("churn")  # 403 whether or not it exists
        with pytest.raises(PermissionDeniedError):
            deps.delete("churn")
    with caller("predictor"), pytest.raises(PermissionDeniedError):
        deps.set_state("fraud-v1", "started")
