"""An output path is written as its extension says, or refused (issue 10: `--out x.json`
silently wrote a Parquet folder)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tureen.errors import InvalidRequestError
from tureen.inference_log.training_set import write_frame
from tureen.offline.training_output import output_kind


@pytest.mark.parametrize(("path", "kind"), [
    ("train.parquet", "parquet-file"), ("train.pq", "parquet-file"), ("t.csv", "csv"),
    ("train", "parquet-folder"), ("runs/2024.05", "parquet-folder"),
])
def test_known_outputs(path: str, kind: str) -> None:
    assert output_kind(path) == kind


@pytest.mark.parametrize("path", ["x.json", "x.JSONL", "x.xlsx", "x.feather", "x.tsv"])
def test_other_formats_are_refused(path: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match=r"\.parquet.*\.csv"):
        output_kind(path)
    with pytest.raises(InvalidRequestError):
        write_frame(pd.DataFrame({"a": [1]}), str(tmp_path / path))
    assert not (tmp_path / path).exists()
