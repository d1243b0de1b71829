"""``tureen serve-model`` argument handling (no server started)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tureen.cli.main import cli
from tureen.cli.serving import _model_dirs


def test_flat_model_dir_becomes_version_1(tmp_path: Path) -> None:
    d = tmp_path / "iris"
    d.mkdir()
    (d / "model.joblib").write_bytes(b"x")
    work = tmp_path / "work"
    work.mkdir()
    dirs = _model_dirs(d, "iris", lambda: work)
    assert (dirs["iris"] / "1" / "model.joblib").exists()


def test_versioned_model_dir_keeps_its_versions(tmp_path: Path) -> None:
    d = tmp_path / "iris"
    for v in ("1", "4"):
        (d / v).mkdir(parents=True)
        (d / v / "model.joblib").write_bytes(b"x")

    def no_temp() -> Path:
        raise AssertionError("a versioned --model_dir needs no temporary folder")

    dirs = _model_dirs(d, "clf", no_temp)
    assert sorted(p.name for p in dirs["clf"].iterdir()) == ["1", "4"]


@pytest.mark.parametrize("args", [[], ["--model_dir", "/does/not/exist"]])
def test_nothing_to_serve_is_a_clear_error(args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["serve-model", *args])
    assert result.exit_code == 1
    assert "--model_dir" in result.output


def test_kserve_flags_are_accepted() -> None:
    result = CliRunner().invoke(cli, ["serve-model", "--help"])
    for flag in ("--model_name", "--model_dir", "--http_port", "--grpc_port", "--workers",
                 "--predictor_host", "--predictor_protocol"):
        assert flag in result.output
