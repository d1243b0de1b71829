"""Feast's own SDK, configured with its ``remote`` online store, reads from tureen's feature
server unchanged. Needs a Feast install in a separate interpreter (never imported by tureen):
``TUREEN_FEAST_PYTHON`` (``.ci/run`` creates it) or ``/work/peers/feast/bin/python``; skipped
when absent."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from tests.e2e.feature_server.servers import Server
from tests.services import FEAST_PYTHON, require_feast

FEAST_DEFS = textwrap.dedent('''
    from datetime import timedelta
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Bool, Int64

    account = Entity(name="account", join_keys=["account_id"], value_type=ValueType.INT64)
    account_profile = FeatureView(
        name="account_profile", entities=[account], ttl=timedelta(days=0),
        schema=[Field(name="credit_score", dtype=Int64),
                Field(name="account_age_days", dtype=Int64),
                Field(name="has_2fa_installed", dtype=Bool)],
        source=FileSource(path="data/account_profile.parquet",
                          timestamp_field="event_timestamp"),
    )
''')

CLIENT = textwrap.dedent('''
    import json
    from feast import FeatureStore
    fs = FeatureStore(".")
    out = fs.get_online_features(
        features=["account_profile:credit_score", "account_profile:has_2fa_installed"],
        entity_rows=[{"account_id": 1001}, {"account_id": 1002}, {"account_id": 424242}],
    ).to_dict()
    print(json.dumps(out))
''')


@pytest.mark.slow
def test_feast_sdk_remote_online_store(tmp_path: Path, repo: Path, server: Server) -> None:
    require_feast()
    client = tmp_path / "feast_repo"
    (client / "data").mkdir(parents=True)
    (client / "data" / "account_profile.parquet").write_bytes(
        (repo / "data" / "account_profile.parquet").read_bytes())
    (client / "features.py").write_text(FEAST_DEFS)
    (client / "feature_store.yaml").write_text(
        f"project: fraud_detection\nregistry: data/registry.db\nprovider: local\n"
        f"online_store:\n  type: remote\n  path: {server.url}\n"
        "entity_key_serialization_version: 3\n")
    env = {**os.environ, "FEAST_USAGE": "False"}
    feast = FEAST_PYTHON.parent / "feast"
    subprocess.run([str(feast), "apply"], cwd=client, env=env, check=True, capture_output=True,
                   timeout=300)
    proc = subprocess.run([str(FEAST_PYTHON), "-c", CLIENT], cwd=client, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    from tureen.store import FeatureStore

    with FeatureStore(repo) as fs:
        want = fs.get_online_features(
            ["account_profile:credit_score", "account_profile:has_2fa_installed"],
            {"account_id": [1001, 1002, 424242]}).to_dict()
    assert got["account_id"] == [1001, 1002, 424242]
    assert got["credit_score"] == want["credit_score"]
    assert got["has_2fa_installed"] == want["has_2fa_installed"]
    assert got["credit_score"][2] is None

