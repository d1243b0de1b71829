import json
import textwrap
from pathlib import Path

import pytest

from tureen.errors import ConfigError, ConflictError, NotFoundError, RegistryCorruptError
from tureen.feature_refs import resolve
from tureen.registry.file_store import FileRegistryStore
from tureen.registry.service import Registry
from tureen.repo_loader import load_definitions

HEADER = """
from datetime import timedelta
from tureen import *
account = Entity("account", join_keys=["account_id"], dtype=Int64)
src = FileSource("data/a.parquet")
"""

PROFILE = """
profile = FeatureView(name="profile", entities=[account], source=src, ttl=timedelta(days=1),
                      schema=[Field("credit_score", Int64), Field("age", Int64)])
"""

STATS = """
stats = FeatureView(name="stats", entities=[account], source=src,
                    schema=[Field("count_7d", Int64), Field("age", Int64)])
"""


def repo(tmp_path: Path, *parts: str) -> Path:
    (tmp_path / "features.py").write_text(textwrap.dedent(HEADER + "".join(parts)))
    return tmp_path


def registry(tmp_path: Path) -> Registry:
    return Registry(FileRegistryStore(tmp_path / "data" / "registry.json"), "p",
                    cache_ttl_seconds=0)


def test_apply_creates_then_reports_no_changes(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    plan = reg.apply(load_definitions(repo(tmp_path, PROFILE)))
    assert [(c.action, c.name) for c in plan.changes] == [
        ("create", "account"), ("create", "profile")]
    assert reg.snapshot().version == 1
    again = reg.plan(load_definitions(tmp_path))
    assert not again.has_changes
    assert reg.snapshot().feature_view("profile").ttl_seconds == 86400


def test_apply_update_and_delete_bump_version_and_history(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    reg.apply(load_definitions(repo(tmp_path, PROFILE, STATS)))
    changed = PROFILE.replace("days=1", "days=3")
    plan = reg.apply(load_definitions(repo(tmp_path, changed)))
    actions = {(c.action, c.name) for c in plan.changes}
    assert ("update", "profile") in actions and ("delete", "stats") in actions
    assert reg.snapshot().version == 2
    assert [h["version"] for h in reg.history()] == [1, 2]
    assert "deleted feature view stats" in reg.history()[-1]["summary"]


def test_unknown_entity_is_rejected(tmp_path: Path) -> None:
    bad = PROFILE.replace("entities=[account]", "entities=[Entity('driver')]")
    with pytest.raises(ConfigError, match="entity 'driver'"):
        registry(tmp_path).apply(load_definitions(repo(tmp_path, bad)))


def test_service_with_colliding_feature_names_is_rejected(tmp_path: Path) -> None:
    svc = "svc = FeatureService('svc', [profile, stats])\n"
    with pytest.raises(ConfigError, match="'age' comes from both"):
        registry(tmp_path).apply(load_definitions(repo(tmp_path, PROFILE, STATS, svc)))
    ok = "svc = FeatureService('svc', [profile, stats[['count_7d']]])\n"
    registry(tmp_path).apply(load_definitions(repo(tmp_path, PROFILE, STATS, ok)))


def test_duplicate_names_in_two_files_are_rejected(tmp_path: Path) -> None:
    repo(tmp_path, PROFILE)
    (tmp_path / "more.py").write_text(textwrap.dedent(HEADER + PROFILE.replace(
        "days=1", "days=9")))
    with pytest.raises(ConfigError, match="two different feature views are named 'profile'"):
        load_definitions(tmp_path)


def test_error_in_definition_file_names_file_and_line(tmp_path: Path) -> None:
    bad = PROFILE + "oops = FeatureView(name='x', entities=[account], source=src, schema=[])\n"
    repo(tmp_path, bad)
    with pytest.raises(ConfigError, match=r"features.py:\d+: .*no features"):
        load_definitions(tmp_path)


def test_stale_writer_gets_conflict_and_nothing_is_written(tmp_path: Path) -> None:
    store = FileRegistryStore(tmp_path / "r.json")
    store.save({"version": 0, "x": 1}, 0, "first")
    with pytest.raises(ConflictError, match="another apply won"):
        store.save({"version": 0, "x": 2}, 0, "second")
    assert store.load() == {"version": 1, "x": 1}


def test_corrupt_registry_is_refused_and_left_untouched(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    reg.apply(load_definitions(repo(tmp_path, PROFILE)))
    path = tmp_path / "data" / "registry.json"
    path.write_text('{"version": 3, "entities": [')
    with pytest.raises(RegistryCorruptError, match="left untouched"):
        registry(tmp_path).snapshot()
    with pytest.raises(RegistryCorruptError):
        registry(tmp_path).apply(load_definitions(tmp_path))
    assert path.read_text() == '{"version": 3, "entities": ['
    doc = json.loads(Path(str(path) + ".history.jsonl").read_text().splitlines()[0])
    assert doc["version"] == 1


def test_semantically_broken_registry_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "registry.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"version": 1, "format_version": 1, "project": "p"}))
    with pytest.raises(RegistryCorruptError, match="cannot be read"):
        registry(tmp_path).snapshot()


def test_materialization_records_survive_apply(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    reg = registry(tmp_path)
    reg.apply(load_definitions(repo(tmp_path, PROFILE)))
    t0, t1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    reg.record_materialization("profile", t0, t1)
    reg.apply(load_definitions(repo(tmp_path, PROFILE.replace("days=1", "days=2"))))
    assert reg.snapshot().last_materialized("profile") == t1


def test_resolve_keeps_order_and_suggests(tmp_path: Path) -> None:
    svc = "svc = FeatureService('svc', [stats[['count_7d']], profile])\n"
    reg = registry(tmp_path)
    reg.apply(load_definitions(repo(tmp_path, PROFILE, STATS, svc)))
    snap = reg.snapshot()
    plan = resolve(snap, "svc")
    assert plan.output_names == ["count_7d", "credit_score", "age"]
    assert plan.join_keys == ("account_id",)
    plan = resolve(snap, ["profile:age", "stats:age"], full_feature_names=True)
    assert plan.output_names == ["profile__age", "stats__age"]
    with pytest.raises(Exception, match="full_feature_names"):
        resolve(snap, ["profile:age", "stats:age"])
    with pytest.raises(NotFoundError, match="Did you mean 'profile:credit_score'"):
        resolve(snap, ["profile:credit_scor"])
    with pytest.raises(NotFoundError, match="Did you mean 'profile'"):
        resolve(snap, ["profil:age"])
    with pytest.raises(NotFoundError, match="no feature service named 'sv'"):
        resolve(snap, "sv")
