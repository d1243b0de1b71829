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


# ---- every section rejects unknown keys at load time (issue 10) ------------------------------

def _error(repo: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(repo, environ=environ or {})
    return str(e.value)


def test_serving_typo_is_rejected_with_line_and_suggestion(tmp_path: Path) -> None:
    repo = write(tmp_path, "project: demo\nserving:\n  host: 127.0.0.1\n  http_prot: 9000\n")
    msg = _error(repo)
    assert f"{repo / 'tureen.yaml'}:4" in msg
    assert "serving.http_prot" in msg and "Did you mean 'http_port'" in msg


def test_store_option_typo_fails_at_load_time_not_later(tmp_path: Path) -> None:
    repo = write(tmp_path, "project: demo\nonline_store:\n  type: sqlite\n  pth: x.db\n")
    msg = _error(repo)
    assert f"{repo / 'tureen.yaml'}:4" in msg
    assert "online_store.pth" in msg and "Did you mean 'path'" in msg


@pytest.mark.parametrize(("section", "typo", "want"), [
    ("registry", "{type: sql, url: 'sqlite:///r.db', cache_ttl: 3}", "cache_ttl_seconds"),
    ("offline_store", "{type: spark, mastr: 'local[1]'}", "master"),
    ("offline_store", "{type: duckdb, thread: 2}", "threads"),
    ("online_store", "{type: redis, urls: 'redis://x'}", "url"),
    ("models", "{type: file, paht: m}", "path"),
])
def test_every_backend_section_rejects_typos(tmp_path: Path, section: str, typo: str,
                                             want: str) -> None:
    msg = _error(write(tmp_path, f"project: demo\n{section}: {typo}\n"))
    assert f"tureen.yaml:2: field `{section}." in msg
    assert f"Did you mean '{want}'" in msg


def test_unknown_backend_type_is_rejected_at_load_time(tmp_path: Path) -> None:
    msg = _error(write(tmp_path, "project: demo\nonline_store: {type: reddis}\n"))
    assert "tureen.yaml:2" in msg and "Did you mean 'redis'" in msg


def test_bad_option_value_names_the_field(tmp_path: Path) -> None:
    msg = _error(write(tmp_path, "project: demo\nonline_store: {type: sqlite, mmap_size_mb: -1}\n"))
    assert "online_store.mmap_size_mb" in msg


def test_transformer_typo_is_rejected_with_line(tmp_path: Path) -> None:
    repo = write(tmp_path, "project: demo\nserving:\n  transformers:\n    - name: fraud\n"
                 "      feature_servce: fs\n")
    msg = _error(repo)
    assert "tureen.yaml:5" in msg and "serving.transformers.0.feature_servce" in msg
    assert "Did you mean 'feature_service'" in msg


def test_missing_policy_null_as_written_in_yaml_is_accepted(tmp_path: Path) -> None:
    repo = write(tmp_path, "project: demo\nserving:\n  transformers:\n    - name: fraud\n"
                 "      feature_service: fs\n      missing: {policy: null}\n")
    cfg = load_config(repo, environ={})
    from tureen.transformer import load_transformer_config

    assert load_transformer_config(cfg.serving.transformers[0]).missing.policy == "null"


def test_env_override_typo_names_the_variable(tmp_path: Path) -> None:
    repo = write(tmp_path, "project: demo\n")
    msg = _error(repo, {"TUREEN_ONLINE_STORE__PTH": "x.db"})
    assert "TUREEN_ONLINE_STORE__PTH" in msg and "Did you mean 'path'" in msg


def test_serving_defaults_are_typed(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "project: demo\nserving: {http_port: 9000}\n"), environ={})
    assert cfg.serving.http_port == 9000 and cfg.serving.host is None
