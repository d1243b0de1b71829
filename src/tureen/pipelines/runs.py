"""``RunStore``: pipeline run records under a repo, ``<repo>/data/pipeline_runs/<run id>/``.

Read API (what ``tureen pipeline runs`` and the console use)::

    store = RunStore.for_repo("fraud_repo")
    for run in store.list(limit=20):          # newest first, RunRecord models
        print(run.id, run.pipeline, run.state, run.metrics())
    run = store.get("20261206-101500-3f2a1c")  # NotFoundError for unknown ids
    print(store.log(run.id, "train", tail=50))

Each run folder holds ``run.json`` (the ``RunRecord``, replaced atomically on every state
change, so a reader never sees half a record), ``pipeline.yaml`` (the compiled spec that ran),
``logs/`` (one file per task attempt) and ``artifacts/`` (outputs, one folder per task).
Run ids are ``YYYYMMDD-HHMMSS-xxxxxx`` (UTC), so they sort by start time; ids from outside
are validated before they touch the file system.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from tureen.errors import InvalidRequestError, NotFoundError, suggest
from tureen.pipelines.records import RunRecord

RUNS_DIR = Path("data") / "pipeline_runs"
RUN_FILE = "run.json"
RUN_ID_RE = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")
MAX_LOG_TAIL = 10_000  # lines
MAX_LOG_BYTES = 8 << 20  # a log is read from its end, at most this much


def tail_text(path: Path, lines: int | None = None, max_bytes: int = MAX_LOG_BYTES) -> str:
    """The end of a (possibly huge) text file: its last ``lines`` lines, never reading more
    than ``max_bytes`` from its end; "" when it does not exist."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return ""
    text = data.decode(errors="replace")
    if size > max_bytes:
        text = f"[... {size - max_bytes} earlier bytes not shown]\n" + text.split("\n", 1)[-1]
    if lines is not None:
        text = "\n".join(text.splitlines()[-max(0, min(lines, MAX_LOG_TAIL)):])
    return text


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def check_run_id(run_id: str) -> str:
    if not RUN_ID_RE.fullmatch(run_id):
        raise InvalidRequestError(
            f"{run_id!r} is not a run id; run ids look like 20261206-101500-3f2a1c "
            "(see `tureen pipeline runs list`)."
        )
    return run_id


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and one rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @classmethod
    def for_repo(cls, repo: str | Path = ".") -> RunStore:
        return cls(Path(repo).resolve() / RUNS_DIR)

    # ---- reading ----------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.root / check_run_id(run_id)

    def ids(self) -> list[str]:
        """Run ids, newest first. An id names its second; runs started in the same second
        are ordered by their records' ``created_at`` (the id's random part says nothing)."""
        if not self.root.is_dir():
            return []
        ids = sorted((p.name for p in self.root.iterdir()
                      if RUN_ID_RE.fullmatch(p.name) and (p / RUN_FILE).is_file()),
                     reverse=True)
        out: list[str] = []
        i = 0
        while i < len(ids):
            j = i + 1
            while j < len(ids) and ids[j][:15] == ids[i][:15]:
                j += 1
            same = ids[i:j]
            if len(same) > 1:
                same.sort(key=self._created, reverse=True)
            out.extend(same)
            i = j
        return out

    def _created(self, run_id: str) -> float:
        """``created_at`` of a run's record (an unreadable one counts as oldest)."""
        try:
            return self._read(run_id).created_at.timestamp()
        except (NotFoundError, InvalidRequestError):
            return float("-inf")

    def _read(self, run_id: str) -> RunRecord:
        path = self.run_dir(run_id) / RUN_FILE
        try:
            return RunRecord.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            known = self.ids()
            raise NotFoundError(
                f"no pipeline run {run_id!r} in {self.root}.{suggest(run_id, known)} "
                "List runs with `tureen pipeline runs list`."
            ) from None
        except ValidationError as exc:
            raise InvalidRequestError(
                f"run record {path} is not readable ({exc.error_count()} problems); it was "
                "written by another version of tureen or edited by hand."
            ) from exc

    def get(self, run_id: str) -> RunRecord:
        return self._read(run_id)

    def iter(self, pipeline: str | None = None) -> Iterator[RunRecord]:
        """Readable runs, newest first (records that cannot be read are skipped)."""
        for run_id in self.ids():
            try:
                run = self._read(run_id)
            except (NotFoundError, InvalidRequestError):
                continue
            if pipeline is None or run.pipeline == pipeline:
                yield run

    def list(self, pipeline: str | None = None, limit: int | None = 50) -> list[RunRecord]:
        out: list[RunRecord] = []
        for run in self.iter(pipeline):
            if limit is not None and len(out) >= limit:
                break
            out.append(run)
        return out

    def latest(self, pipeline: str | None = None) -> RunRecord | None:
        return next(self.iter(pipeline), None)

    def log(self, run_id: str, task_id: str, tail: int | None = None) -> str:
        """The log of a task's last attempt (``tail``: only the last lines)."""
        run = self._read(run_id)
        task = run.task(task_id)
        if task is None:
            hint = suggest(task_id, [t.id for t in run.tasks])
            raise NotFoundError(f"run {run_id} has no task {task_id!r}.{hint}")
        if task.log is None:
            return ""
        path = (self.run_dir(run_id) / task.log).resolve()
        if not path.is_relative_to(self.run_dir(run_id).resolve()):
            raise InvalidRequestError(f"run {run_id}: task {task_id} has an invalid log path.")
        return tail_text(path, tail)

    # ---- writing (the runner) ---------------------------------------------------------------
    def create(self, record: RunRecord) -> Path:
        path = self.run_dir(record.id)
        path.mkdir(parents=True, exist_ok=False)
        self.save(record)
        return path

    def save(self, record: RunRecord) -> None:
        write_atomic(self.run_dir(record.id) / RUN_FILE, record.model_dump_json(indent=1))
