"""The Spark session of ``SparkEngine``: its options in tureen.yaml and how it is started.

One SparkSession per JVM: an active one is reused (with the settings tureen's semantics need:
UTC session time, Arrow transfer, nanosecond Parquet timestamps read as longs); otherwise one
is built from ``SparkOptions``. A JVM that cannot start is a ``BackendUnavailableError``
that says what to check.

Spark is quiet unless asked (``tureen -v``, or this module's logger enabled for INFO): the
JVM tureen starts writes its logs and progress bars to a file in the temp folder (named in
the error if it fails to start) instead of the terminal, and PySpark's pandas-version warning
is not shown.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

from pyspark.sql import SparkSession

from tureen.backend_options import SparkOptions as SparkOptions  # re-exported
from tureen.errors import BackendUnavailableError

log = logging.getLogger(__name__)


def session(options: SparkOptions) -> tuple[SparkSession, bool]:
    """The active session (reused: one per JVM) or a new one; True when created here."""
    active = SparkSession.getActiveSession()
    if active is not None:
        runtime_conf(active)
        worker_python(active, options)
        return active, False
    builder = SparkSession.builder.master(options.master).appName(options.app_name)
    defaults: dict[str, str] = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.legacy.parquet.nanosAsLong": "true",
        "spark.sql.parquet.inferTimestampNTZ.enabled": "true",
    }
    quiet = not log.isEnabledFor(logging.INFO)
    if quiet:
        defaults["spark.ui.showConsoleProgress"] = "false"
        warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas",
                                FutureWarning)
    conf = {**defaults, **{k: str(v) for k, v in options.conf.items()}}
    for key, value in conf.items():
        builder = builder.config(key, value)
    jvm_log = None
    try:
        if quiet:
            jvm_log = _launch_jvm_quietly(options, conf)
        spark = builder.getOrCreate()
    except Exception as exc:  # the JVM failed to start: no Java, bad master, ...
        output = f" Spark's output is in {jvm_log}." if jvm_log else ""
        raise BackendUnavailableError(
            f"cannot start Spark (master {options.master!r}): {exc}. Check that Java 17+ is "
            "installed (JAVA_HOME) and that offline_store.master in tureen.yaml is reachable."
            f"{output}"
        ) from exc
    worker_python(spark, options)
    return spark, True


def _launch_jvm_quietly(options: SparkOptions, conf: dict[str, str]) -> Path | None:
    """Start the driver JVM (what ``getOrCreate`` would) with its output going to a log file;
    the path, or None when a JVM is already running (it keeps its own output)."""
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    if SparkContext._gateway is not None or "PYSPARK_GATEWAY_PORT" in os.environ:
        return None
    path = Path(tempfile.gettempdir()) / f"tureen-spark-{os.getpid()}.log"
    spark_conf = SparkConf(loadDefaults=False).setMaster(options.master).setAppName(
        options.app_name).setAll(list(conf.items()))
    with path.open("ab") as out:  # the JVM keeps its own copy of the descriptor
        streams = {"stdout": out, "stderr": out}
        gateway = launch_gateway(spark_conf, popen_kwargs=streams)  # type: ignore[no-untyped-call]
    SparkContext._gateway = gateway
    SparkContext._jvm = gateway.jvm
    log.debug("Spark's output goes to %s", path)
    return path


def worker_python(spark: SparkSession, options: SparkOptions) -> None:
    """Point the Python workers at an interpreter that can import tureen.

    PySpark starts workers with ``PYSPARK_PYTHON`` or a bare ``python3`` from PATH, which on a
    local master is usually not the virtualenv tureen runs in (``No module named 'tureen'``
    in the first UDF). The interpreter is read from the SparkContext each time a UDF is
    created, so this also fixes a session the user built before handing it to tureen.
    """
    context = spark.sparkContext
    if options.python:
        context.pythonExec = options.python
    elif "PYSPARK_PYTHON" not in os.environ and (context.master or "").startswith("local"):
        context.pythonExec = sys.executable


def runtime_conf(spark: SparkSession) -> None:
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
