"""The README and every page under docs/ run as written, top to bottom.

The blocks are extracted from the Markdown files at test time, so the test breaks when the
documentation does. The convention (summarised in README.md, "Development"):

- ```bash (``sh``, ``shell``) blocks of one page run in ONE bash session, in order, with
  ``set -euo pipefail``: ``cd``, variables and background jobs (``cmd &``) carry over from
  one block to the next, as in a terminal. The session starts in an empty folder, with the
  installed ``tureen`` (and ``python``) first on PATH; commands read stdin from /dev/null.
- ```python blocks run as ``python BLOCK.py`` in the session's current folder, each in its
  own interpreter (so every snippet carries its imports).
- Other blocks (yaml, json, text, no language) are illustrations and are not run. Write
  usage synopses (``tureen models list [NAME] [--json]``) as ```text.
- An HTML comment on the line right before a block changes what happens to it:

  ``<!-- readme-test: skip REASON -->``     not run; say why (keep these rare)
  ``<!-- readme-test: file PATH -->``       written to PATH (relative to the session's folder)
  ``<!-- readme-test: append PATH -->``     appended to PATH
  ``<!-- readme-test: timeout SECONDS -->`` a longer limit for a slow block (default 300 s)
  ``<!-- readme-test: needs SERVICE -->``   the block needs ``redis``, ``postgres`` or
                                            ``java``: skipped with a reason when absent,
                                            a failure when ``TUREEN_REQUIRE_SERVICES=1``;
                                            or ``kfp`` (``tureen[pipelines]``): only that
                                            block is skipped when kfp is not installed
                                            (a failure when ``TUREEN_REQUIRE_KFP=1``)

  Several directives can share one comment, separated by ``;``.
- ``curl`` fails on an HTTP error status (the session runs it with ``--fail-with-body``), so
  a block whose request is refused fails the test.
- When a page ends, its background jobs are stopped (SIGTERM, then SIGKILL). Pages run one at
  a time machine-wide (a lock file), since the docs use the default ports (8080, 8081, 6566).

Shared services: the session exports ``TUREEN_PROJECT=readme_<uuid>`` so a block that points
a repo at the shared Redis or PostgreSQL writes under its own project; what it wrote there is
deleted afterwards.
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.services import (
    POSTGRES_URL,
    purge_redis_project,
    redis_available,
    require_postgres,
    require_redis,
    require_service,
)

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_LANGS = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python", "py": "python"}
DEFAULT_TIMEOUT = 300.0
SERVICES = ("redis", "postgres", "java", "kfp")
LOCK = Path(os.environ.get("TMPDIR", "/tmp")) / "tureen-readme-test.lock"
#: the session's ``curl`` fails on HTTP errors, so a refused request fails the block
_PRELUDE = 'set -euo pipefail\ncurl() { command curl --fail-with-body "$@"; }\n'
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)[^\n]*$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*readme-test:\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    skip: str | None = None
    file: str | None = None
    append: bool = False
    timeout: float = DEFAULT_TIMEOUT
    needs: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def _directives(comment: str, block: Block) -> None:
    for part in filter(None, (p.strip() for p in comment.split(";"))):
        word, _, arg = part.partition(" ")
        arg = arg.strip()
        if word == "skip":
            if not arg:
                raise ValueError(f"{block.where}: `readme-test: skip` needs a reason")
            block.skip = arg
        elif word in ("file", "append"):
            if not arg:
                raise ValueError(f"{block.where}: `readme-test: {word}` needs a PATH")
            block.file, block.append = arg, word == "append"
        elif word == "timeout":
            block.timeout = float(arg)
        elif word == "needs":
            unknown = set(arg.split()) - set(SERVICES)
            if unknown or not arg:
                raise ValueError(f"{block.where}: `readme-test: needs` takes "
                                 f"{', '.join(SERVICES)}; got {arg!r}")
            block.needs = (*block.needs, *arg.split())
        else:
            raise ValueError(f"{block.where}: unknown readme-test directive {word!r}")


def extract_blocks(path: Path) -> list[Block]:
    """Fenced code blocks of a Markdown file with the directives that precede them."""
    lines = path.read_text().splitlines()
    rel = str(path.relative_to(ROOT))
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.group(1), m.group(2), m.group(3).lower()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence)
                                      and lines[i].strip().strip(fence[0]) == ""):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1  # the closing fence
        block = Block(rel, start + 1, lang, "\n".join(body) + "\n")
        prev = start - 1
        while prev >= 0 and not lines[prev].strip():
            prev -= 1
        d = _DIRECTIVE.match(lines[prev]) if prev >= 0 else None
        if d:
            _directives(d.group(1), block)
        out.append(block)
    return out


def runnable(block: Block) -> bool:
    return block.file is not None or (block.lang in RUN_LANGS and block.skip is None)


class Session:
    """One bash process reading commands from a pipe, like a terminal."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.dir = workdir
        self.ctl = workdir.parent / f"{workdir.name}-ctl"
        self.ctl.mkdir()
        self.log = self.ctl / "session.log"
        self._log = self.log.open("wb")
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], stdin=subprocess.PIPE, stdout=self._log,
            stderr=subprocess.STDOUT, cwd=workdir, env=env, start_new_session=True)
        self._send(_PRELUDE)
        self.n = 0

    def _send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def run(self, block: Block) -> None:
        self.n += 1
        done = self.ctl / f"done-{self.n}"
        if block.file is not None:
            payload = self.ctl / f"block-{self.n}.txt"
            payload.write_text(block.text)
            op = ">>" if block.append else ">"
            target = shlex.quote(block.file)
            cmd = (f'mkdir -p "$(dirname {target})" && cat {shlex.quote(str(payload))} '
                   f"{op} {target}")
        elif RUN_LANGS[block.lang] == "python":
            script = self.ctl / f"block-{self.n}.py"
            script.write_text(block.text)
            cmd = f"python {shlex.quote(str(script))} < /dev/null"
        else:
            script = self.ctl / f"block-{self.n}.sh"
            script.write_text(block.text)
            cmd = f"source {shlex.quote(str(script))} < /dev/null"
        self._send(f"echo '>>> {block.where}' >&2\n{cmd}\npwd > {shlex.quote(str(done))}\n")
        deadline = time.monotonic() + block.timeout
        while not done.exists():
            if self.proc.poll() is not None:
                pytest.fail(f"{block.where}: the block failed (shell exit status "
                            f"{self.proc.returncode}):\n{block.text}\n--- output ---\n"
                            f"{self.tail()}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"{block.where}: still running after {block.timeout:.0f} s:\n"
                            f"{block.text}\n--- output ---\n{self.tail()}", pytrace=False)
            time.sleep(0.05)

    def tail(self, chars: int = 6000) -> str:
        self._log.flush()
        return self.log.read_text(errors="replace")[-chars:]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._send("kill $(jobs -p) 2>/dev/null || true; wait || true; exit 0\n")
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):  # anything the session left running
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            time.sleep(0.5)
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)
        self._log.close()


def _check_needs(block: Block) -> None:
    """Skip (laptop) or fail (CI) the page here when a service the block needs is absent."""
    for need in block.needs:
        if need == "redis":
            require_redis()
        elif need == "postgres":
            require_postgres()
        elif need == "java":
            java = os.environ.get("JAVA_HOME")
            require_service("Java 17", bool(java and Path(java, "bin", "java").exists()),
                            "set JAVA_HOME to a Java 17 runtime to run the Spark blocks.")


def _kfp_missing() -> bool:
    """A ``needs kfp`` block is skipped alone (the rest of the page does not depend on it)."""
    import importlib.util

    if importlib.util.find_spec("kfp") is not None:
        return False
    if os.environ.get("TUREEN_REQUIRE_KFP") == "1":
        pytest.fail("kfp is not installed; pip install 'tureen[pipelines]' "
                    "(TUREEN_REQUIRE_KFP=1, so this is a failure)")
    return True


def _purge_shared(project: str) -> None:
    """Delete what the page wrote under ``project`` in the shared Redis and PostgreSQL."""
    if redis_available():
        purge_redis_project(project)
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 2})
    except ImportError:
        return
    try:
        with engine.begin() as conn:
            for t in sa.inspect(conn).get_table_names():
                if t.startswith("tureen_registry"):
                    conn.execute(sa.text(f'DELETE FROM "{t}" WHERE project = :p'),
                                 {"p": project})
    except sa.exc.OperationalError:  # no PostgreSQL here: nothing was written to it
        pass
    finally:
        engine.dispose()


def _env(project: str) -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUREEN_")}
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["TUREEN_PROJECT"] = project
    if "TUREEN_REQUIRE_SERVICES" in os.environ:
        env["TUREEN_REQUIRE_SERVICES"] = os.environ["TUREEN_REQUIRE_SERVICES"]
    env.pop("VIRTUAL_ENV", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_directives_parse() -> None:
    """Every directive in the docs is well-formed, and every skip says why."""
    for page in PAGES:
        for b in extract_blocks(page):
            assert b.skip is None or b.skip.strip(), b.where


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_runs_as_written(page: Path, tmp_path: Path) -> None:
    blocks = [b for b in extract_blocks(page) if runnable(b)]
    if not blocks:
        pytest.skip(f"{page.name} has no runnable blocks")
    project = f"readme_{uuid.uuid4().hex[:12]}"
    work = tmp_path / "session"
    work.mkdir()
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one page at a time: the docs use fixed ports
        session = Session(work, _env(project))
        try:
            for block in blocks:
                if "kfp" in block.needs and _kfp_missing():
                    continue
                _check_needs(block)
                session.run(block)
        finally:
            session.close()
            _purge_shared(project)
