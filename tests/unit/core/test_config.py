from pathlib import Path

import pytest

from tureen.config import load_config
from tureen.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "tureen.yaml").write_text(text)
    return tmp_path


def test_defaults_are_embedded(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "project: demo\n"), environ={})
    assert cfg.registry.type == "file"
    assert cfg.offline_store.type == "duckdb"
    assert cfg.online_store.type == "sqlite"
    assert cfg.online_store.options == {"path": "data/online.db"}


def test_registry_shorthand_is_a_file_path(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "project: demo\nregistry: reg.json\n"), environ={})
    assert cfg.registry.type == "file"
    assert cfg.registry.options == {"path": "reg.json"}


def test_unknown_field_names_file_line_and_field(tmp_path: Path) -> None:
    repo = write(tmp_path, "project: demo\nonline_store:\n  type: sqlite\nonlin_store: {}\n")
    with pytest.raises(ConfigError) as e:
        load_config(repo, environ={})
    assert f"{repo / 'tureen.yaml'}:4" in str(e.value)
    assert "onlin_store" in str(e.value)


def test_missing_type_points_at_section(tmp_path: Path) -> None:
    repo = write(tmp_path, "project: demo\nonline_store:\n  path: x.db\n")
    with pytest.raises(ConfigError, match=r"tureen.yaml:3: field `online_store.type`"):
        load_config(repo, environ={})


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    repo = write(tmp_path, "project: demo\nonline_store: {type: sqlite\n")
    with pytest.raises(ConfigError, match=r"tureen.yaml:\d+: not valid YAML"):
        load_config(repo, environ={})


def test_bad_project_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="project"):
        load_config(write(tmp_path, "project: 'has space'\n"), environ={})


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tureen init"):
        load_config(tmp_path, environ={})


def test_env_overrides_switch_backend_and_drop_old_options(tmp_path: Path) -> None:
    repo = write(tmp_path, "project: demo\nonline_store: {type: sqlite, path: a.db}\n")
    cfg = load_config(repo, environ={
        "TUREEN_ONLINE_STORE__URL": "redis://127.0.0.1:6379",
        "TUREEN_ONLINE_STORE__TYPE": "redis",
        "TUREEN_PROJECT": "other",
        "TUREEN_UNRELATED": "x",
    })
    assert cfg.project == "other"
    assert cfg.online_store.type == "redis"
    assert cfg.online_store.options == {"url": "redis://127.0.0.1:6379"}


def test_env_override_of_option_keeps_type(tmp_path: Path) -> None:
    repo = write(tmp_path, "project: demo\nonline_store: {type: sqlite, path: a.db}\n")
    cfg = load_config(repo, environ={"TUREEN_ONLINE_STORE__PATH": "b.db"})
    assert cfg.online_store.type == "sqlite"
    assert cfg.online_store.options == {"path": "b.db"}
