"""What a serving process reports about its deployments: per-version request statistics,
status files (``tureen deploy status``) and log files (``tureen deploy logs``)."""

from __future__ import annotations

import collections
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tureen.serving.context import RequestIdFilter

_FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s [%(request_id)s]: %(message)s"


def log_path(repo_path: Path, deployment: str, component: str) -> Path:
    """Where a serving process writes a deployment's log lines (``deploy logs`` reads it)."""
    return repo_path / ".tureen" / "logs" / f"{deployment}-{component}.log"


def status_path(repo_path: Path, deployment: str, pid: int) -> Path:
    return repo_path / ".tureen" / "status" / f"{deployment}.{pid}.json"


def read_status(repo_path: Path, deployment: str, max_age_seconds: float = 30.0
                ) -> list[dict[str, Any]]:
    """The live status files of ``deployment`` (one per serving worker, fresh ones only)."""
    out = []
    for p in sorted((repo_path / ".tureen" / "status").glob(f"{deployment}.*.json")):
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if time.time() - float(data.get("at", 0)) <= max_age_seconds:
            out.append(data)
    return out


def file_logger(repo_path: Path, deployment: str, component: str, source: str
                 ) -> logging.Logger:
    """``tureen.deployments.<deployment>.<component>``, also written to the deployment's log
    file; ``source`` (e.g. ``tureen.transformer``) is forwarded to the same file."""
    path = log_path(repo_path, deployment, component)
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(f"tureen.deployments.{deployment}.{component}")
    if not any(getattr(h, "baseFilename", None) == str(path) for h in logger.handlers):
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler.addFilter(RequestIdFilter())  # the console filters lines by request id
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        if source:
            src = logging.getLogger(source)
            src.addHandler(handler)
            if src.level == logging.NOTSET or src.level > logging.INFO:
                src.setLevel(logging.INFO)
    return logger


@dataclass
class VersionStats:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=4096))

    def as_dict(self) -> dict[str, float]:
        lat = sorted(self.latencies)

        def q(p: float) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0.0

        return {"requests": self.requests, "errors": self.errors,
                "mean_seconds": self.seconds / self.requests if self.requests else 0.0,
                "p50_seconds": q(0.5), "p99_seconds": q(0.99)}
