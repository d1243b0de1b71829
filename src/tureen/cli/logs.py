"""``tureen logs``: turn what was served into the next training set, and measure skew."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import click

from tureen.cli.output import console, json_option, print_json, repo_option, table
from tureen.errors import InvalidRequestError, NotFoundError, TureenError


def parquet_root(url: str | None, repo: str) -> str:
    from tureen.inference_log.sinks import parquet_root

    return parquet_root(url, repo)


def read_log(root: str, deployment: str, start: date | None, end: date | None) -> Any:
    from tureen.inference_log.dataset import read_log

    return read_log(root, deployment, start, end)


def _log_root(repo: str, deployment: str, log_dir: str | None) -> str:
    """--log-dir, else the deployment's Parquet sink, else the repo's default log folder."""
    if log_dir:
        return parquet_root(log_dir, repo)
    try:
        from tureen.deployments import Deployments

        spec = Deployments.for_repo(repo).get(deployment)
    except TureenError:
        return parquet_root(None, repo)
    sink = spec.log_sink
    if sink and sink.startswith(("http://", "https://", "kafka://")):
        raise InvalidRequestError(
            f"deployment {deployment!r} logs to {sink}, not to Parquet: land those records in "
            "Parquet first and pass that folder with --log-dir."
        )
    return parquet_root(sink, repo)


def _feature_service(repo: str, deployment: str, given: str | None) -> str:
    if given:
        return given
    try:
        from tureen.deployments import Deployments

        spec = Deployments.for_repo(repo).get(deployment)
    except NotFoundError:
        spec = None
    if spec is not None and spec.feature_service:
        return spec.feature_service
    raise InvalidRequestError(
        f"which feature service did deployment {deployment!r} serve? Pass --feature-service."
    )


def _duration(text: str | None) -> timedelta | None:
    if not text:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return timedelta(seconds=float(text[:-1]) * units[text[-1]])
    except (KeyError, ValueError):
        raise InvalidRequestError(f"--tolerance {text!r}: write e.g. 30m, 12h or 7d.") from None


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def register(cli: click.Group) -> None:
    @cli.group()
    def logs() -> None:
        """Inference logs: training sets from served requests, training/serving skew."""

    @logs.command("training-set")
    @click.argument("deployment")
    @click.option("--labels", required=True, type=click.Path(exists=True, dir_okay=False),
                  help="Parquet/CSV/JSON labels: request_id[,row] or entity keys + timestamp.")
    @click.option("--out", required=True, type=click.Path(dir_okay=False),
                  help="Output file (.parquet or .csv).")
    @click.option("--timestamp-column", default="event_timestamp", show_default=True,
                  help="Label time column for the as-of match by entity.")
    @click.option("--tolerance", help="Match only predictions this recent (e.g. 7d, 12h).")
    @click.option("--log-dir", help="Parquet inference log folder (default: the deployment's).")
    @click.option("--start", help="First log date (YYYY-MM-DD).")
    @click.option("--end", help="Last log date (YYYY-MM-DD).")
    @repo_option
    @json_option
    def training_set(deployment: str, labels: str, out: str, timestamp_column: str,
                     tolerance: str | None, log_dir: str | None, start: str | None,
                     end: str | None, repo: str, as_json: bool) -> None:
        """Join DEPLOYMENT's logged requests with late-arriving LABELS into a training set."""
        from tureen.inference_log.training_set import (
            build_training_set,
            read_labels,
            write_frame,
        )

        log = read_log(_log_root(repo, deployment, log_dir), deployment, _day(start), _day(end))
        result = build_training_set(log, read_labels(labels), timestamp_column,
                                    _duration(tolerance))
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_frame(result.frame, out)
        summary = {"deployment": deployment, "out": str(Path(out).resolve()),
                   "rows": len(result.frame), "matched": result.matched,
                   "unmatched_labels": result.unmatched, "method": result.method,
                   "columns": list(result.frame.columns)}
        if as_json:
            print_json(summary)
            return
        console.print(
            f"Wrote {len(result.frame)} rows to [bold]{out}[/] (matched by {result.method}; "
            f"{result.unmatched} labels had no logged prediction)."
        )

    @logs.command()
    @click.argument("deployment")
    @click.option("--feature-service", help="Default: the deployment's feature service.")
    @click.option("--log-dir", help="Parquet inference log folder (default: the deployment's).")
    @click.option("--limit", type=int, help="Compare only the newest N logged rows.")
    @click.option("--start", help="First log date (YYYY-MM-DD).")
    @click.option("--end", help="Last log date (YYYY-MM-DD).")
    @click.option("--rtol", default=1e-6, show_default=True, help="Relative float tolerance.")
    @repo_option
    @json_option
    def skew(deployment: str, feature_service: str | None, log_dir: str | None,
             limit: int | None, start: str | None, end: str | None, rtol: float, repo: str,
             as_json: bool) -> None:
        """Compare features as served with the offline store's point-in-time values."""
        from tureen.inference_log.skew import compute_skew
        from tureen.store import FeatureStore

        service = _feature_service(repo, deployment, feature_service)
        log = read_log(_log_root(repo, deployment, log_dir), deployment, _day(start), _day(end))
        with FeatureStore(repo) as store:
            report = compute_skew(store, log, service, limit=limit, rtol=rtol)
        if as_json:
            print_json({"deployment": deployment, "feature_service": service,
                        "features": [r.as_dict() for r in report]})
            return
        table(f"skew of {deployment} vs. offline ({service})",
              ["feature", "compared", "mismatches", "mismatch rate", "served nulls",
               "offline nulls"],
              [[r.feature, r.compared, r.mismatches, f"{r.mismatch_rate:.2%}", r.served_nulls,
                r.offline_nulls] for r in report])
