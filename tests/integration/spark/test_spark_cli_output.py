"""The Spark backend keeps the terminal clean: no Java logs, pandas warnings or Spark progress
bars unless asked for with `tureen -v` (issue 10); a training set written again to the same
--out replaces it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.integration.spark.conftest import _skip_or_fail, java_available

from tureen.examples.fraud import create_repo

NOISE = ("log4j", "WARN ", "FutureWarning", "[Stage ", "incubator")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not java_available():
        _skip_or_fail("no Java runtime for Spark: install a JDK 17+ and set JAVA_HOME")
    repo = create_repo(tmp_path_factory.mktemp("quiet") / "repo", accounts=30)
    config = repo / "tureen.yaml"
    config.write_text(config.read_text().replace("type: duckdb", "type: spark", 1))
    return repo


def training_set(repo: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "tureen", *flags, "get-historical-features", "--repo", str(repo),
         "--entities", str(repo / "data/labels.parquet"), "--service", "fraud_detection_v2",
         "--out", str(repo / f"train{len(flags)}.parquet")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_spark_is_quiet_by_default_and_talks_with_verbose(repo: Path) -> None:
    subprocess.run([sys.executable, "-m", "tureen", "apply", "--repo", str(repo)], check=True,
                   capture_output=True, timeout=300)
    quiet = training_set(repo)
    assert not [n for n in NOISE if n in quiet.stderr + quiet.stdout], quiet.stderr[-3000:]
    assert "Wrote" in quiet.stdout
    again = training_set(repo)  # the same --out: replaced, as with DuckDB (Spark refused)
    assert "Wrote" in again.stdout
    loud = training_set(repo, "-v")
    assert "WARN" in loud.stderr or "log4j" in loud.stderr  # Spark's own output, as asked
