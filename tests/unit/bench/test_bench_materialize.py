"""bench_materialize's child runs leave nothing behind in the temp folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_sqlite_child_removes_its_store_folder(tmp_path: Path) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    out = subprocess.run(
        [sys.executable, "bench/bench_materialize.py", "--child", "sqlite", "--size", "200x3",
         "--root", str(tmp_path / "data"), "--url", ""],
        cwd=ROOT, capture_output=True, text=True, check=True,
        env={**os.environ, "TMPDIR": str(temp)}).stdout
    assert json.loads(out.strip().splitlines()[-1])["rows"] == 200
    assert [p.name for p in temp.iterdir() if p.name.startswith("tureen-bench-mat-")] == []
