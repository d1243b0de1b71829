"""The ``tureen`` command starts fast, accepts both flag spellings, and fails in one line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import click
import pytest

from tureen.cli.main import cli

#: modules that cost hundreds of milliseconds to import; --help / --version must not need them
HEAVY = ("numpy", "pandas", "pyarrow", "duckdb", "pyspark", "sklearn", "rich.table",
         "rich.progress", "pydantic", "fsspec", "tureen.store", "tureen.serving.server")

_PROBE = """
import json, sys
from tureen.cli.main import cli
try:
    cli([{arg!r}], prog_name="tureen")
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


@pytest.mark.parametrize("arg", ["--help", "--version"])
def test_help_and_version_import_nothing_heavy(arg: str) -> None:
    code = _PROBE.format(arg=arg, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    for name, cmd in group.commands.items():
        out.append((prefix + name, cmd))
        if isinstance(cmd, click.Group):
            out += _commands(cmd, prefix + name + " ")
    return out


def test_every_long_flag_takes_both_spellings() -> None:
    missing = []
    for name, cmd in _commands(cli):
        for p in cmd.params:
            for opt in (*p.opts, *p.secondary_opts):
                if not opt.startswith("--"):
                    continue
                for alt in ("--" + opt[2:].replace("-", "_"), "--" + opt[2:].replace("_", "-")):
                    if alt not in (*p.opts, *p.secondary_opts):
                        missing.append(f"tureen {name} {opt}: no {alt}")
    assert not missing, missing


def test_hyphenated_kserve_flag_parses() -> None:
    cmd = cli.commands["serve-model"]
    ctx = cmd.make_context("serve-model", ["--grace-seconds", "5", "--http-port", "9",
                                           "--disable-grpc"])
    assert ctx.params["grace_seconds"] == 5.0 and ctx.params["http_port"] == 9
    assert ctx.params["enable_grpc"] is False


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "model.py").write_text(
        "from tureen.serving import Model\n\n"
        "class Echo(Model):\n"
        "    def load(self):\n        self.ready = True\n        return True\n\n"
        "    def predict(self, x, headers=None):\n        return x\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-c", "from tureen.cli.main import main; main()", "serve-model",
             "--model_dir", str(model), "--host", "127.0.0.1", "--http_port", str(port),
             "--grpc_port", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "already in use" in lines[0] and "Traceback" not in proc.stderr



_OPEN_REPO = """
import json, sys
from tureen.store import FeatureStore
store = FeatureStore({repo!r})
snap = store.snapshot()
odfv = sorted(snap.on_demand_views)
print(json.dumps({{"odfv": odfv, "pandas": "pandas" in sys.modules}}))
"""


def test_reading_a_repo_with_on_demand_views_needs_no_pandas(tmp_path: Path) -> None:
    """A cached pipeline rerun (and every command that only reads the registry) opens the
    feature store and its stored on-demand functions: pandas (0.3-0.8 s to import) loads
    only when a transform first runs."""
    repo = tmp_path / "fraud"
    subprocess.run([sys.executable, "-m", "tureen", "init", str(repo), "--accounts", "50"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([sys.executable, "-m", "tureen", "apply", "--repo", str(repo)],
                   check=True, capture_output=True, timeout=120)
    out = subprocess.run([sys.executable, "-c", _OPEN_REPO.format(repo=str(repo))],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert got["odfv"], "the example repo should hold an on-demand view"
    assert got["pandas"] is False
