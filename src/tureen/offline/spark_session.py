"""The Spark session of ``SparkEngine``: its options in tureen.yaml and how it is started.

One SparkSession per JVM: an active one is reused (with the settings tureen's semantics need:
UTC session time, Arrow transfer, nanosecond Parquet timestamps read as longs); otherwise one
is built from ``SparkOptions``. A JVM that cannot start is a ``BackendUnavailableError``
that says what to check.
"""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

from tureen.backend_options import SparkOptions as SparkOptions  # re-exported
from tureen.errors import BackendUnavailableError


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
    for key, value in {**defaults, **{k: str(v) for k, v in options.conf.items()}}.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # the JVM failed to start: no Java, bad master, ...
        raise BackendUnavailableError(
            f"cannot start Spark (master {options.master!r}): {exc}. Check that Java 17+ is "
            "installed (JAVA_HOME) and that offline_store.master in tureen.yaml is reachable."
        ) from exc
    worker_python(spark, options)
    return spark, True


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
