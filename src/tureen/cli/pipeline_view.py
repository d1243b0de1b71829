"""Rich rendering of pipeline runs: the task table (live while a run goes), run summaries."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from tureen.cli.output import console, err_console
from tureen.pipelines.records import RunRecord, RunState, TaskRecord, TaskState

STATE_STYLE = {
    TaskState.PENDING: "dim", TaskState.RUNNING: "bold blue", TaskState.SUCCEEDED: "green",
    TaskState.CACHED: "cyan", TaskState.FAILED: "bold red", TaskState.SKIPPED: "yellow",
    TaskState.CANCELED: "magenta",
}
RUN_STYLE = {"RUNNING": "bold blue", "SUCCEEDED": "green", "FAILED": "bold red",
             "CANCELED": "magenta"}


def ordered(tasks: list[TaskRecord]) -> Iterator[tuple[int, TaskRecord]]:
    """Tasks depth-first under their groups; within a group upstream before downstream."""
    by_id = {t.id: t for t in tasks}
    level: dict[str, int] = {}

    def depth(t: TaskRecord, seen: frozenset[str] = frozenset()) -> int:
        if t.id not in level:
            ups = [by_id[u] for u in t.depends_on if u in by_id and u not in seen]
            level[t.id] = 1 + max((depth(u, seen | {t.id}) for u in ups), default=-1)
        return level[t.id]

    children: dict[str | None, list[TaskRecord]] = {}
    for t in tasks:
        children.setdefault(t.parent, []).append(t)
    for group in children.values():
        group.sort(key=depth)  # stable: creation order among tasks of one depth

    def walk(parent: str | None, depth: int) -> Iterator[tuple[int, TaskRecord]]:
        for t in children.get(parent, []):
            yield depth, t
            yield from walk(t.id, depth + 1)

    yield from walk(None, 0)


def _duration(t: TaskRecord) -> str:
    if t.duration_s is not None:
        return f"{t.duration_s:.2f} s"
    if t.state is TaskState.RUNNING and t.started_at is not None:
        from datetime import UTC, datetime

        return f"{(datetime.now(UTC) - t.started_at).total_seconds():.1f} s"
    return ""


def _note(t: TaskRecord) -> str:
    if t.state is TaskState.FAILED and t.error:
        return t.error.splitlines()[0][:120]
    if t.reason and t.state in (TaskState.SKIPPED, TaskState.CANCELED):
        return t.reason[:120]
    if t.cache is not None and t.kind == "container":
        return f"{'hit' if t.cache.hit else 'miss'}: {t.cache.reason}"[:120]
    return ""


def task_table(run: RunRecord) -> Table:
    table = Table(title=f"{run.pipeline} · run {run.id}", title_justify="left", expand=False)
    for col in ("task", "state", "time", "tries", "cache / reason"):
        table.add_column(col, overflow="fold")
    by_id = {t.id: t for t in run.tasks}
    for depth, t in ordered(run.tasks):
        if t.kind == "iteration" and t.state is TaskState.SUCCEEDED:
            continue  # an iteration's tasks carry what matters
        parent = by_id.get(t.parent or "")
        label = t.name if parent is None or parent.kind != "iteration" \
            else f"{t.name} {parent.name[parent.name.rfind('['):]}"
        name = Text("  " * depth + label, style="dim" if t.kind not in ("container",
                                                                      "importer") else "")
        table.add_row(name, Text(t.state.value, style=STATE_STYLE[t.state]), _duration(t),
                      str(t.attempts) if t.attempts > 1 else "", _note(t))
    return table


def _progress(run: RunRecord) -> Group:
    leaf = [t for t in run.tasks if t.kind in ("container", "importer")]
    done = sum(t.state.done for t in leaf)
    bar = ProgressBar(total=max(1, len(leaf)), completed=done, width=40)
    return Group(bar, Text(f"{done}/{len(leaf)} tasks done · {run.state.value}",
                           style=RUN_STYLE.get(run.state.value, "")))


@contextmanager
def live_view(enabled: bool = True) -> Iterator[Any]:
    """Yields ``update(run)``; refreshes from the caller's thread only (no refresh thread,
    so the runner can fork safely), at most 10 times a second."""
    if not enabled or not err_console.is_terminal:
        yield lambda run: None
        return
    last = [0.0]
    real = err_console.get() if hasattr(err_console, "get") else err_console  # not the proxy
    with Live(Text(""), console=real, auto_refresh=False, transient=False) as live:
        def update(run: RunRecord) -> None:
            now = time.monotonic()
            if run.state is RunState.RUNNING and now - last[0] < 0.1:
                return
            last[0] = now
            live.update(Group(task_table(run), _progress(run)), refresh=True)

        yield update


def runs_table(runs: list[RunRecord]) -> Table:
    t = Table(title="pipeline runs", title_justify="left")
    t.add_column("run", no_wrap=True)
    for col in ("pipeline", "state", "started", "duration", "tasks", "metrics"):
        t.add_column(col)
    for r in runs:
        t.add_row(r.id, r.pipeline, Text(r.state.value, style=RUN_STYLE.get(r.state.value, "")),
                  r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                  "" if r.duration_s is None else f"{r.duration_s:.1f} s",
                  " ".join(f"{k.lower()}={v}" for k, v in sorted(r.counts().items())),
                  " ".join(f"{k}={v:.3g}" for k, v in list(r.metrics().items())[:3]))
    return t


def print_warnings(run: RunRecord) -> None:
    for w in run.warnings:
        err_console.print(f"[yellow]warning:[/] {w}")


def print_run(run: RunRecord, show_warnings: bool = True, show_tasks: bool = True) -> None:
    style = RUN_STYLE.get(run.state.value, "")
    console.print(f"run [bold]{run.id}[/] of [bold]{run.pipeline}[/] ({run.source}): "
                  f"[{style}]{run.state.value}[/]"
                  + (f" in {run.duration_s:.2f} s" if run.duration_s is not None else ""))
    if run.parameters:
        console.print("  parameters: " + ", ".join(f"{k}={v!r}" for k, v in
                                                   run.parameters.items()))
    if run.resumed_from:
        console.print(f"  resumed from {run.resumed_from}")
    for w in run.warnings if show_warnings else ():
        console.print(f"  [yellow]warning:[/] {w}")
    if run.tasks and show_tasks:
        console.print(task_table(run))
    metrics = run.metrics()
    if metrics:
        console.print("  metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    for m in run.registered_models():
        console.print(f"  registered model {m.name}:{m.version} (task {m.task})")
    if run.error:
        console.print(f"[bold red]error:[/] {run.error}")
