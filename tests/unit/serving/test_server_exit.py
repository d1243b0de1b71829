"""How a stopped server process exits when model threads are still alive: threads that finish
shortly after the stop (an idle pool's workers, a predict completing) let it exit normally —
atexit handlers run — while a thread that never returns does not keep the process."""

from __future__ import annotations

import subprocess
import sys

PRELUDE = """
import atexit, logging, threading, time
from concurrent.futures import ThreadPoolExecutor
from tureen.serving import server
logging.basicConfig(level=logging.WARNING, format="%(message)s")
atexit.register(lambda: print("atexit ran", flush=True))
"""

FINISHING = PRELUDE + """
pool = ThreadPoolExecutor(1, thread_name_prefix="tureen-model-1")
started = threading.Event()
def work():
    started.set()
    time.sleep(0.3)
pool.submit(work)
started.wait()
pool.shutdown(wait=False)   # what DataPlane.close does
server._leave_stuck_threads(0)
"""

HUNG = PRELUDE + """
server.STUCK_GRACE_SECONDS = 0.2
threading.Thread(target=threading.Event().wait, name="tureen-hung-1").start()
server._leave_stuck_threads(3)
"""


def _run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)


def test_model_threads_that_finish_after_the_stop_let_the_process_exit_normally() -> None:
    out = _run(FINISHING)
    assert out.returncode == 0, out.stderr
    assert "still run" not in out.stderr
    assert "atexit ran" in out.stdout


def test_a_model_thread_that_never_returns_does_not_keep_the_process() -> None:
    out = _run(HUNG)
    assert out.returncode == 3, out.stderr
    assert "exiting while model threads still run: tureen-hung-1" in out.stderr
    assert "atexit ran" not in out.stdout
