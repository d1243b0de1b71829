"""Close the loop: logged requests + late-arriving labels → the next training set.

Two ways to match a label to what was served, chosen from the label file's columns:

1. **By request id** (exact): the labels have a ``request_id`` column (and optionally
   ``row``, the index of the instance within a multi-row request; without it the label
   applies to every row of that request).
2. **By entity and time** (as of): the labels have the entity key columns the deployment
   logged plus a timestamp column (``event_timestamp`` by default): each label is matched to
   the most recent logged prediction for the same entity keys at or before the label's
   timestamp (no older than ``tolerance`` when given). This is the usual case of an outcome
   observed after the prediction (a chargeback after a transaction was scored).

Every label matches at most one logged row; labels without a match are dropped and counted.
The output has one row per matched label: the entity keys, the features exactly as the model
saw them (their own names), request-time fields as ``request__<name>``, ``served_at``,
``request_id``, ``row``, ``model_name``, ``model_version``, the predictions as
``prediction__<name>``, then the label columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pandas as pd
import pyarrow as pa

from tureen.errors import InvalidRequestError
from tureen.inference_log.dataset import ENTITY, FEATURE, PREDICTION, REQUEST, columns_with
from tureen.offline.training_output import output_kind

DEFAULT_LABEL_TIMESTAMP = "event_timestamp"


@dataclass(frozen=True)
class TrainingSetResult:
    frame: pd.DataFrame
    matched: int
    unmatched: int
    method: str  # "request_id" or "asof"


def _served(log: pa.Table) -> pd.DataFrame:
    df = log.to_pandas()
    rename = {"timestamp": "served_at"}
    for c in df.columns:
        if c.startswith(ENTITY):
            rename[c] = c[len(ENTITY):]
        elif c.startswith(REQUEST):
            rename[c] = "request__" + c[len(REQUEST):]
        elif c.startswith(FEATURE):
            rename[c] = c[len(FEATURE):]
        elif c.startswith(PREDICTION):
            rename[c] = "prediction__" + c[len(PREDICTION):]
    out: pd.DataFrame = df.rename(columns=rename).drop(columns=["deployment"], errors="ignore")
    return out


def build_training_set(
    log: pa.Table,
    labels: pd.DataFrame,
    timestamp_column: str = DEFAULT_LABEL_TIMESTAMP,
    tolerance: timedelta | None = None,
) -> TrainingSetResult:
    entity_keys = columns_with(log, ENTITY)
    served = _served(log)
    label_cols = list(labels.columns)
    if "request_id" in labels.columns:
        keys = ["request_id", "row"] if "row" in labels.columns else ["request_id"]
        lab = labels.copy()
        lab["request_id"] = lab["request_id"].astype(str)
        if "row" in keys:
            lab["row"] = lab["row"].astype("int32")
        dup = lab.duplicated(keys)
        if dup.any():
            raise InvalidRequestError(
                f"the labels have {int(dup.sum())} duplicate {keys} rows; keep one label per "
                "served instance."
            )
        merged = served.merge(lab, on=keys, how="inner", suffixes=("", "_label"))
        matched_labels = lab.merge(served[keys].drop_duplicates(), on=keys, how="inner")
        unmatched = len(lab) - len(matched_labels)
        return TrainingSetResult(merged.reset_index(drop=True), len(merged), unmatched,
                                 "request_id")

    keys = [k for k in entity_keys if k in labels.columns]
    if not entity_keys or not keys or len(keys) != len(entity_keys):
        raise InvalidRequestError(
            "the labels need either a 'request_id' column or the entity key columns the "
            f"deployment logged ({entity_keys or 'none were logged'}) plus a "
            f"{timestamp_column!r} column; the label file has {label_cols}."
        )
    if timestamp_column not in labels.columns:
        raise InvalidRequestError(
            f"the labels have no timestamp column {timestamp_column!r}; add it or pass "
            f"--timestamp-column. Columns: {label_cols}."
        )
    lab = labels.copy()
    lab["__label_ts"] = pd.to_datetime(lab[timestamp_column], utc=True).astype(
        "datetime64[us, UTC]")
    lab["__label_order"] = range(len(lab))
    srv = served.copy()
    srv["served_at"] = pd.to_datetime(srv["served_at"], utc=True).astype("datetime64[us, UTC]")
    for k in keys:  # join keys must have one dtype on both sides
        if lab[k].dtype != srv[k].dtype:
            lab[k] = lab[k].astype(srv[k].dtype)
    lab = lab.sort_values("__label_ts", kind="stable")
    srv = srv.sort_values("served_at", kind="stable")
    label_only = [c for c in lab.columns if c not in keys]
    merged = pd.merge_asof(
        lab[[*keys, *label_only]], srv, left_on="__label_ts", right_on="served_at", by=keys,
        direction="backward", tolerance=pd.Timedelta(tolerance) if tolerance else None,
        allow_exact_matches=True, suffixes=("_label", ""),
    )
    hit = merged["request_id"].notna()
    out = merged[hit].sort_values("__label_order").drop(columns=["__label_ts", "__label_order"])
    served_cols = [c for c in srv.columns if c in out.columns]
    rest = [c for c in out.columns if c not in served_cols]
    out = out[[*served_cols, *rest]].reset_index(drop=True)
    return TrainingSetResult(out, int(hit.sum()), int((~hit).sum()), "asof")


def read_labels(path: str) -> pd.DataFrame:
    lower = path.lower()
    if lower.endswith((".csv", ".csv.gz", ".tsv")):
        return pd.read_csv(path, sep="\t" if lower.endswith(".tsv") else ",")
    if lower.endswith(".json") or lower.endswith(".jsonl"):
        return pd.read_json(path, lines=lower.endswith(".jsonl"))
    return pd.read_parquet(path)


def write_frame(frame: pd.DataFrame, path: str) -> None:
    """``.csv`` as CSV, otherwise Parquet; another format's extension is refused."""
    if path.lower().endswith(".csv.gz") or output_kind(path) == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
