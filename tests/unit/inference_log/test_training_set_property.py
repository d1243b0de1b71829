"""The as-of label join against a brute-force oracle (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from tureen.inference_log.training_set import build_training_set

T0 = datetime(2026, 1, 1, tzinfo=UTC)
served_rows = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 50)), min_size=1,
                       max_size=25)
label_rows = st.lists(st.tuples(st.integers(0, 4), st.integers(-5, 60)), min_size=1,
                      max_size=25)


def _log(rows: list[tuple[int, int]]) -> pa.Table:
    return pa.table({
        "request_id": [f"r{i}" for i in range(len(rows))],
        "row": pa.array([0] * len(rows), pa.int32()),
        "deployment": ["d"] * len(rows),
        "model_name": ["m"] * len(rows),
        "model_version": ["1"] * len(rows),
        "timestamp": pa.array([T0 + timedelta(minutes=m) for _, m in rows],
                              pa.timestamp("us", tz="UTC")),
        "entity.k": [k for k, _ in rows],
        "feature.x": [float(m) for _, m in rows],
    })


@settings(max_examples=60, deadline=None)
@given(served_rows, label_rows, st.one_of(st.none(), st.integers(1, 30)))
def test_asof_join_matches_oracle(served: list[tuple[int, int]], labels: list[tuple[int, int]],
                                  tol: int | None) -> None:
    lab = pd.DataFrame({"k": [k for k, _ in labels],
                        "event_timestamp": [T0 + timedelta(minutes=m) for _, m in labels],
                        "y": list(range(len(labels)))})
    tolerance = timedelta(minutes=tol) if tol is not None else None
    res = build_training_set(_log(served), lab, tolerance=tolerance)
    want = []
    for i, (k, m) in enumerate(labels):
        cands = [sm for sk, sm in served
                 if sk == k and sm <= m and (tol is None or sm >= m - tol)]
        if cands:
            want.append((i, float(max(cands))))
    got = list(zip(res.frame["y"].tolist(), res.frame["x"].tolist(), strict=True))
    assert got == want  # label order kept, latest prediction at or before the label
    assert res.matched == len(want) and res.unmatched == len(labels) - len(want)
