"""Shared CLI output: rich console, tables, progress bars, JSON for scripts.

rich is imported on first output, not when the command line is parsed (``tureen --help``
stays fast).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console


class _LazyConsole:
    """A rich ``Console`` created on first use."""

    def __init__(self, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def get(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


console: Any = _LazyConsole()
err_console: Any = _LazyConsole(stderr=True)

repo_option = click.option(
    "--repo", "-r", default=".", show_default=True, envvar="TUREEN_REPO",
    type=click.Path(file_okay=False), help="Feature repo folder (holds tureen.yaml).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _default(o: Any) -> Any:
    if isinstance(o, (datetime, date)):
        return o.isoformat()
    if isinstance(o, bytes):
        return o.hex()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=_default) + "\n")


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, overflow="fold")  # a narrow terminal wraps values, never cuts them
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    console.print(t)


@contextmanager
def progress_bar(enabled: bool = True, extra: tuple[Any, ...] = ()) -> Iterator[Any]:
    """Yield a callback ``(label, done, total)`` that drives a rich progress bar (one line
    per label; ``extra`` columns after the elapsed time)."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), *extra, console=err_console.get(),
                  transient=False) as prog:
        tasks: dict[str, Any] = {}

        def update(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = prog.add_task(label, total=total or None)
            prog.update(tasks[label], completed=done, total=total or None)

        yield update


@contextmanager
def rows_progress(label: str, enabled: bool = True) -> Iterator[Any]:
    """Yield a callback ``(rows_done, total_rows)`` drawing one bar with rows done, elapsed
    time and the estimated time left (on stderr, so stdout stays clean for --json)."""
    if not enabled:
        yield None
        return
    from rich.progress import TextColumn, TimeRemainingColumn

    with progress_bar(extra=(TextColumn("ETA"), TimeRemainingColumn())) as update:

        def rows(done: int, total: int) -> None:
            update(label, done, total)

        yield rows
