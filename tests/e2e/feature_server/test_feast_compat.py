"""Feast wire compatibility, measured against Feast 0.67 itself (issue 10): `feast serve` and
tureen's feature server side by side on the same data, and Feast's own SDK with its `remote`
online store pointed at tureen. Feast runs in its own interpreter (``TUREEN_FEAST_PYTHON`` or
/work/peers/feast; ``.ci/run`` creates it), never imported by tureen."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.feature_server.servers import Server, free_port, start
from tests.e2e.server_process import ServerProcess, wait_ready
from tests.feast_logins import LAST_LOGIN, NOW, write_data
from tests.feast_logins import tureen_repo as make_tureen_repo
from tests.services import FEAST_PYTHON, require_feast

ENV = {**os.environ, "FEAST_USAGE": "False"}

FEAST_DEFS = '''
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, UnixTimestamp

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
logins = FeatureView(
    name="logins", entities=[user], ttl=timedelta(days=1),
    schema=[Field(name="last_login", dtype=UnixTimestamp), Field(name="score", dtype=Float64)],
    source=FileSource(path="data/logins.parquet", timestamp_field="event_timestamp"),
)
'''
# the client also declares a view tureen does not have: its reads must fail the Feast way
GHOST = '''
ghost = FeatureView(
    name="ghost", entities=[user], ttl=timedelta(days=1),
    schema=[Field(name="score", dtype=Float64)],
    source=FileSource(path="data/logins.parquet", timestamp_field="event_timestamp"),
)
'''


@dataclass
class Setup:
    feast: ServerProcess  # `feast serve` on its own SQLite online store
    exact: Server  # tureen serve-features
    compat: Server  # tureen serve-features --feast-compat
    client: Path  # a Feast repo whose online store is tureen (remote)
    compat_client: Path  # the same, pointed at the --feast-compat server
    feast_client: Path  # the same, pointed at `feast serve`


def feast(repo: Path, *args: str) -> None:
    proc = subprocess.run([str(FEAST_PYTHON.parent / "feast"), *args], cwd=repo, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


def feast_serve(repo: Path, log: Path) -> ServerProcess:
    port = free_port()
    with log.open("wb") as f:
        proc = subprocess.Popen([str(FEAST_PYTHON.parent / "feast"), "serve", "-h", "127.0.0.1",
                                 "-p", str(port), "--no-access-log"], cwd=repo, env=ENV,
                                stdout=f, stderr=subprocess.STDOUT)
    return wait_ready(ServerProcess(proc, port, log=log), "feast serve", "/health")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_feast()
    root = tmp_path_factory.mktemp("feast_compat")
    tureen_repo, feast_repo, client = root / "tureen", root / "feast", root / "client"
    compat_client, feast_client = root / "compat_client", root / "feast_client"
    for d in (feast_repo, client, compat_client, feast_client):
        (d / "data").mkdir(parents=True)
        write_data(d / "data" / "logins.parquet")
    make_tureen_repo(tureen_repo)
    (feast_repo / "features.py").write_text(FEAST_DEFS)
    (feast_repo / "feature_store.yaml").write_text(
        "project: compat\nregistry: data/registry.db\nprovider: local\n"
        "online_store: {type: sqlite, path: data/online.db}\n"
        "entity_key_serialization_version: 3\n")
    feast(feast_repo, "apply")
    feast(feast_repo, "materialize", (NOW - timedelta(days=10)).isoformat(),
          (NOW + timedelta(seconds=1)).isoformat())
    servers: list[ServerProcess] = []
    try:
        servers.append(feast_serve(feast_repo, root / "feast.log"))
        args = ["serve-features", "--repo", str(tureen_repo), "--host", "127.0.0.1"]
        servers.append(start(args, root / "exact.log", port_flags=("--port", "--grpc-port")))
        servers.append(start([*args, "--feast-compat"], root / "compat.log",
                             port_flags=("--port", "--grpc-port")))
        for repo, server in ((client, servers[1]), (compat_client, servers[2]),
                             (feast_client, servers[0])):
            (repo / "features.py").write_text(FEAST_DEFS + GHOST)
            (repo / "feature_store.yaml").write_text(
                f"project: compat\nregistry: data/registry.db\nprovider: local\n"
                f"online_store:\n  type: remote\n  path: {server.url}\n"
                "entity_key_serialization_version: 3\n")
            feast(repo, "apply")
        yield Setup(servers[0], servers[1], servers[2], client, compat_client, feast_client)
    finally:
        for s in servers:
            s.stop()


def online(server: ServerProcess, ids: list[Any]) -> dict[str, Any]:
    r = httpx.post(server.url + "/get-online-features", timeout=30, json={
        "features": ["logins:last_login", "logins:score"], "entities": {"user_id": ids}})
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def features(doc: dict[str, Any]) -> list[tuple[list[Any], list[str]]]:
    """(values, statuses) per feature, by name: `feast serve` does not answer in the
    requested order (tureen does), so columns are matched by their names."""
    names = doc["metadata"]["feature_names"]
    by_name = {n: (r["values"], r["statuses"]) for n, r in zip(names, doc["results"], strict=True)}
    return [by_name[n] for n in sorted(by_name) if n != "user_id"]


def stamps(doc: dict[str, Any]) -> dict[str, list[str]]:
    names = doc["metadata"]["feature_names"]
    return {n: r["event_timestamps"] for n, r in zip(names, doc["results"], strict=True)
            if n != "user_id"}


IDS = ["1001", "1002", "1003", "9999"]


def test_feast_compat_answers_exactly_like_feast_serve(setup: Setup) -> None:
    theirs, ours = online(setup.feast, IDS), online(setup.compat, IDS)
    assert ours["metadata"]["feature_names"] == ["user_id", "last_login", "score"]  # as asked
    assert sorted(theirs["metadata"]["feature_names"]) == sorted(ours["metadata"]["feature_names"])
    assert features(ours) == features(theirs)
    assert stamps(ours) == stamps(theirs)
    # timestamps are epoch seconds, as Feast's unix_timestamp_val (tureen sent ISO strings)
    assert features(ours)[0][0][0] == int(LAST_LOGIN.timestamp())


def test_exact_mode_differs_only_where_documented(setup: Setup) -> None:
    theirs, exact = features(online(setup.feast, IDS)), features(online(setup.exact, IDS))
    for (their_vals, their_st), (vals, st) in zip(theirs, exact, strict=True):
        for i, user in enumerate(IDS):
            if user == "1003":  # past the TTL: Feast returns the stale value as PRESENT
                assert (their_st[i], st[i], vals[i]) == ("PRESENT", "OUTSIDE_MAX_AGE", None)
            elif user == "1002" and their_vals[i] is None:  # a stored null
                assert (their_st[i], st[i]) == ("PRESENT", "NULL_VALUE")
            else:
                assert (their_vals[i], their_st[i]) == (vals[i], st[i])


def test_a_numeric_id_for_a_string_key_is_converted_like_feast(setup: Setup) -> None:
    theirs, ours = online(setup.feast, [1001]), online(setup.compat, [1001])
    assert ours["results"][0]["values"] == theirs["results"][0]["values"] == ["1001"]
    assert features(ours) == features(theirs)


SDK = textwrap.dedent('''
    import json, sys
    from datetime import datetime, timezone
    import pandas as pd
    from feast import FeatureStore
    from feast.errors import FeatureViewNotFoundException

    fs = FeatureStore(".")
    out = {}
    try:
        fs.get_online_features(features=["ghost:score"], entity_rows=[{"user_id": "1001"}])
        out["ghost"] = "no error"
    except FeatureViewNotFoundException as exc:
        out["ghost"] = type(exc).__name__ + ": " + str(exc)
    except Exception as exc:
        out["ghost"] = "untyped " + type(exc).__name__ + ": " + str(exc)
    when = datetime(2024, 5, 1, 8, 30, tzinfo=timezone.utc)
    fs.write_to_online_store("logins", pd.DataFrame({
        "user_id": ["3001"], "last_login": [when], "score": [0.125],
        "event_timestamp": [datetime.now(timezone.utc)]}))
    got = fs.get_online_features(features=["logins:last_login", "logins:score"],
                                 entity_rows=[{"user_id": "3001"}]).to_dict()
    out["read"] = {k: [str(v) for v in vs] for k, vs in got.items()}
    print(json.dumps(out))
''')


def test_the_feast_sdk_raises_typed_errors_and_writes_timestamps(setup: Setup) -> None:
    proc = subprocess.run([str(FEAST_PYTHON), "-c", SDK], cwd=setup.client, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]  # the write used to be a 400
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["ghost"].startswith("FeatureViewNotFoundException: ")  # was a RuntimeError
    assert "ghost" in out["ghost"]
    assert out["read"]["score"] == ["0.125"]
    when = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)  # the SDK shows epoch seconds or a time
    assert out["read"]["last_login"][0] in (str(int(when.timestamp())), str(when),
                                            str(when.replace(tzinfo=None)))


SDK_READ = textwrap.dedent('''
    import json
    from feast import FeatureStore

    got = FeatureStore(".").get_online_features(
        features=["logins:last_login", "logins:score"],
        entity_rows=[{"user_id": u} for u in ["1001", "1002", "1003", "9999"]]).to_dict()
    print(json.dumps({k: [None if v is None else str(v) for v in vs] for k, vs in got.items()}))
''')


def sdk_read(repo: Path) -> dict[str, list[str | None]]:
    proc = subprocess.run([str(FEAST_PYTHON), "-c", SDK_READ], cwd=repo, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, list[str | None]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def test_the_feast_sdk_sees_both_modes_as_documented(setup: Setup) -> None:
    """Feast's SDK (remote online store) reading `feast serve`, tureen --feast-compat and
    tureen exact."""
    theirs = sdk_read(setup.feast_client)
    assert sdk_read(setup.compat_client) == theirs  # Feast's answers, value for value
    exact = sdk_read(setup.client)
    assert theirs["score"][2] == "0.25" and exact["score"][2] is None  # 1003 is past its TTL
    for name in theirs:  # everything else is the same
        assert exact[name][:2] + exact[name][3:] == theirs[name][:2] + theirs[name][3:]
