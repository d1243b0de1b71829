"""``tureen serve`` and streams: /metrics shows every stream view's status, and with
``--ingest`` (or ``streaming.ingest_in_serve``) the server runs ``tureen ingest`` beside it,
as a child process that gets SIGTERM (a final checkpoint) when the server stops. If the server
dies without stopping it (SIGKILL), the child sees its lifeline (``tureen.lifeline``) reach
EOF and stops the same way."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from tureen.definitions import KafkaSource, StreamFeatureView
from tureen.lifeline import Lifeline

if TYPE_CHECKING:
    from tureen.store import FeatureStore

log = logging.getLogger(__name__)


@contextmanager
def hosted_ingest(store: FeatureStore, run: bool) -> Iterator[subprocess.Popen[bytes] | None]:
    views = [v for v in store.snapshot().feature_views.values()
             if isinstance(v, StreamFeatureView)]
    if views:
        from tureen.serving.metrics import add_renderer
        from tureen.streaming.metrics import repo_renderer

        cfg = store.config.streaming
        add_renderer(repo_renderer(store.repo_path, 3 * cfg.status_interval_seconds + 5))
    kafka = [v for v in views if isinstance(v.source, KafkaSource)]
    if not run or not kafka:
        if run:
            log.warning("--ingest: no stream view reads a KafkaSource; nothing to consume")
        yield None
        return
    line = Lifeline()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "tureen", "ingest", "--repo",
                                 str(store.repo_path), "--lifeline-fd", str(line.fd)],
                                pass_fds=(line.fd,))
    except BaseException:
        line.close()
        raise
    line.release()
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        line.close()
