"""One task attempt, inside its own process (forked from the runner or from the fork server,
or started with ``python -m tureen.pipelines.worker JOB.json``; see ``pool``).

The process sends its stdout and stderr (file descriptors, so C extensions and
subprocesses are captured too) to the task's log, sets the task's environment variables,
then either runs a lightweight Python component the way Kubeflow's ``executor_main`` does —
the function's source as compiled into the spec, through ``kfp``'s own ``Executor``, so
artifacts, ``NamedTuple`` outputs and metrics behave exactly as on a cluster — or runs a
container's command in the current environment. It ends by hashing its output artifacts
(``digests.json``), so the runner's cache can key downstream tasks on their content without
hashing on the scheduler's thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import linecache
import os
import signal
import subprocess
import sys
import traceback
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


@dataclass
class Job:
    task_id: str
    kind: str  # python | command
    executor_input: dict[str, Any]
    log_path: str
    digests_path: str
    workdir: str
    env: dict[str, str] = field(default_factory=dict)
    source: str = ""
    function: str = ""
    argv: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        return cls(**json.loads(text))


def digest_path(path: Path) -> str | None:
    """sha256 of a file, or of a folder's (relative path, file digest) list; None if absent."""
    if path.is_file():
        h = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        return h.hexdigest()
    if path.is_dir():
        h = hashlib.sha256(b"dir\0")
        for p in sorted(path.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(path)).encode() + b"\0")
                h.update((digest_path(p) or "").encode() + b"\0")
        return h.hexdigest()
    return None


def _output_artifacts(job: Job) -> dict[str, list[dict[str, Any]]]:
    out_file = Path(job.executor_input["outputs"]["outputFile"])
    arts: dict[str, list[dict[str, Any]]] = {
        k: v.get("artifacts", []) for k, v in
        job.executor_input["outputs"].get("artifacts", {}).items()}
    if out_file.is_file():
        try:
            written = json.loads(out_file.read_text() or "{}")
        except ValueError:
            written = {}
        for k, v in (written.get("artifacts") or {}).items():
            arts[k] = v.get("artifacts", arts.get(k, []))
    return arts


def write_digests(job: Job) -> None:
    digests: dict[str, list[str | None]] = {}
    for name, arts in _output_artifacts(job).items():
        digests[name] = [digest_path(Path(a["uri"])) if a.get("uri") and "://" not in a["uri"]
                         else None for a in arts]
    Path(job.digests_path).write_text(json.dumps(digests))


def _run_python(job: Job) -> None:
    from kfp.dsl import executor as kfp_executor

    module = types.ModuleType("ephemeral_component")
    module.__file__ = f"<component {job.function}>"
    filename = f"<component {job.function} of task {job.task_id}>"
    linecache.cache[filename] = (len(job.source), None, job.source.splitlines(True), filename)
    code = compile(job.source, filename, "exec", dont_inherit=True)
    exec(code, module.__dict__)
    func = module.__dict__.get(job.function)
    if func is None:
        raise RuntimeError(f"the component source defines no function {job.function!r}")
    kfp_executor.Executor(job.executor_input, func).execute()


def run(job: Job) -> int:
    """Run the attempt in this process (stdio already redirected); the exit code."""
    os.environ.update(job.env)
    os.environ["_KFP_RUNTIME"] = "true"
    os.chdir(job.workdir)
    try:
        if job.kind == "python":
            _run_python(job)
        else:
            code = subprocess.run(job.argv, env=os.environ.copy(), check=False).returncode
            if code != 0:
                print(f"command exited with code {code}: {' '.join(job.argv)[:300]}",
                      file=sys.stderr)
                return code
        write_digests(job)
        return 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        if code != 0:
            print(f"the component called sys.exit({exc.code!r})", file=sys.stderr)
            return code
        write_digests(job)
        return 0
    except BaseException as exc:
        _print_error(exc, job)
        return 1


def _print_error(exc: BaseException, job: Job | None = None) -> None:
    """The traceback from the component's own code down (not the runner's or kfp's frames);
    tureen's own errors (which say what to do) as one line. The runner reads ``error.json``
    for the task's error message."""
    from tureen.errors import TureenError

    ours = isinstance(exc, TureenError)
    if job is not None:
        with contextlib.suppress(OSError):
            Path(job.digests_path).with_name("error.json").write_text(json.dumps(
                {"type": type(exc).__name__, "message": str(exc), "tureen": ours}))
    if ours:
        print(f"Error: {exc}", file=sys.stderr)
        return
    tb = exc.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<"):
        tb = tb.tb_next
    if tb is None and job is not None and job.kind == "python":
        # raised by kfp's executor around the component (a return value of the wrong
        # type, say): its frames say nothing the message does not
        print("".join(traceback.format_exception_only(type(exc), exc)), end="",
              file=sys.stderr)
        return
    traceback.print_exception(type(exc), exc, tb if tb is not None else exc.__traceback__)


def redirect(log_path: str) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)


def _die_with_parent() -> None:
    """Linux: be killed when the process that started us dies, even by SIGKILL."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def child_main(job: Job) -> None:
    """Entry of a child forked from the runner or the fork server: never returns."""
    code = 1
    try:
        os.setpgid(0, 0)
        _die_with_parent()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        redirect(job.log_path)
        code = run(job)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tureen.pipelines.worker JOB.json", file=sys.stderr)
        return 2
    job = Job.from_json(Path(args[0]).read_text())
    redirect(job.log_path)
    return run(job)


if __name__ == "__main__":
    sys.exit(main())
