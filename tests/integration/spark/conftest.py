"""One local SparkSession for the whole run (local[2], few shuffle partitions), and the
``engine`` / ``repo`` fixtures the offline correctness suite expects."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.services import REQUIRED


def _skip_or_fail(msg: str) -> None:
    if REQUIRED:
        pytest.fail(msg + " (TUREEN_REQUIRE_SERVICES=1, so this is a failure)")
    pytest.skip(msg)


def java_available() -> bool:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return True
    return shutil.which("java") is not None


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    if importlib.util.find_spec("pyspark") is None:
        _skip_or_fail("pyspark is not installed: pip install 'tureen[spark]'")
    if not java_available():
        _skip_or_fail("no Java runtime for Spark: install a JDK 17+ and set JAVA_HOME")
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]").appName("tureen-tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.adaptive.enabled", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    # Warm up: PySpark's first call imports IPython (when installed), which raises the
    # recursion limit; done here, it does not surprise hypothesis inside a test.
    session.range(1).selectExpr("id + 1").count()
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def engine(spark: Any, repo: Path) -> Iterator[Any]:
    from tureen.offline.spark_engine import SparkEngine

    eng = SparkEngine(repo, spark=spark)
    try:
        yield eng
    finally:
        eng.close()
