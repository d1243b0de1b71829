"""`serving.auth/tls/audit` in tureen.yaml: validated where the file loads, errors located."""

from __future__ import annotations

from pathlib import Path

import pytest

from tureen.config import load_config
from tureen.errors import ConfigError


def _write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "tureen.yaml").write_text("project: p\nserving:\n" + body)
    return tmp_path


def test_auth_section_is_parsed(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "  auth:\n    type: token\n"
                                       "  tls: {cert: c.pem, key: k.pem}\n"), environ={})
    assert cfg.serving.auth is not None and cfg.serving.auth.type == ["token"]
    assert cfg.serving.tls is not None and cfg.serving.tls.reload
    env = load_config(tmp_path, environ={"TUREEN_SERVING__AUTH__OPEN_METRICS": "false"})
    assert env.serving.auth is not None and env.serving.auth.open_metrics is False


def test_unknown_keys_and_bad_values_name_the_line(tmp_path: Path) -> None:
    _write(tmp_path, "  auth:\n    type: token\n    open_helth: false\n")
    with pytest.raises(ConfigError, match=r"tureen.yaml:5.*open_helth"):
        load_config(tmp_path, environ={})
    _write(tmp_path, "  auth:\n    type: basic\n")
    with pytest.raises(ConfigError, match=r"auth\.type"):
        load_config(tmp_path, environ={})
    _write(tmp_path, "  auth:\n    type: oidc\n    oidc: {issuer: x, audience: a, "
                     "algorithms: [HS256]}\n")
    with pytest.raises(ConfigError, match="HS256"):
        load_config(tmp_path, environ={})
