"""A Redis restarted empty is noticed (issue 11 #14): a private redis-server is filled by
materialization, killed and started again with no persistence. /health turns degraded,
``tureen features list`` says which views were lost, and ``materialize-incremental``
reloads them (the watermark alone says "done")."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.integration.redis.conftest import need_redis_server
from tests.integration.redis.local_cluster import RedisProcess, spare_ports

from tureen.examples.fraud import create_repo
from tureen.feature_server.health import health_report
from tureen.store import FeatureStore


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    need_redis_server()
    server = RedisProcess(spare_ports(1)[0], tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.kill()


def test_restarted_empty_redis_is_reported_and_repaired(tmp_path: Path,
                                                       redis_server: RedisProcess) -> None:
    repo = create_repo(tmp_path / "repo", accounts=20, days=3)
    (repo / "tureen.yaml").write_text(
        f"project: lost\nonline_store: {{type: redis, url: '{redis_server.url}'}}\n")
    now = datetime.now(UTC)
    with FeatureStore(repo) as fs:
        fs.apply()
        fs.materialize_incremental(now)
        before = fs.get_online_features(["account_profile:credit_score"],
                                        {"account_id": [1001]}).to_dict()["credit_score"]
        assert before[0] is not None
        assert health_report(fs)["status"] == "ok"

    redis_server.kill()  # no dump, no AOF: it comes back empty
    redis_server.start()

    with FeatureStore(repo) as fs:
        report = health_report(fs)
        assert report["status"] == "degraded"
        assert set(report["online_store"]["lost_views"]) == {"account_profile",
                                                              "transaction_stats"}
        assert "materialize-incremental" in report["online_store"]["error"]
    listed = subprocess.run(
        [sys.executable, "-m", "tureen", "features", "list", "--repo", str(repo), "--json"],
        capture_output=True, text=True, timeout=120, check=True)
    online = {r["name"]: r["online"] for r in json.loads(listed.stdout)
              if r["kind"] == "feature view"}
    assert online == {"account_profile": "lost", "transaction_stats": "lost"}

    with FeatureStore(repo) as fs:
        done = {r.view: r for r in fs.materialize_incremental(now + timedelta(seconds=1))}
        assert done["account_profile"].rows == 20  # not 0: the watermark said "done"
        assert "lost" in (done["account_profile"].note or "")
        after = fs.get_online_features(["account_profile:credit_score"],
                                       {"account_id": [1001]}).to_dict()["credit_score"]
        assert after == before
        assert health_report(fs)["status"] == "ok"


def test_a_fused_transformer_warns_that_the_store_lost_its_data(
    tmp_path: Path, redis_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """It used to score every entity with its defaults and say nothing."""
    from tureen.transformer.features import LocalFeatures

    repo = create_repo(tmp_path / "repo", accounts=20, days=3)
    (repo / "tureen.yaml").write_text(
        f"project: lost\nonline_store: {{type: redis, url: '{redis_server.url}'}}\n")
    with FeatureStore(repo) as fs:
        fs.apply()
        fs.materialize_incremental(datetime.now(UTC))
        features = LocalFeatures(fs, "fraud_detection_v1", "fraud")
        features.load()
        assert features.watch.check() == frozenset()
        redis_server.kill()
        redis_server.start()  # empty
        with caplog.at_level("WARNING", "tureen.transformer.store_watch"):
            assert features.watch.check() == {"account_profile", "transaction_stats"}
            assert features.watch.check() == {"account_profile", "transaction_stats"}
        warned = [r.getMessage() for r in caplog.records]
        assert len(warned) == 1 and "fraud: the online store redis lost the data of " \
            "account_profile, transaction_stats" in warned[0]  # once, not per request
        fs.materialize_incremental(datetime.now(UTC) + timedelta(seconds=1))
        assert features.watch.check() == frozenset()
