"""``DeploymentSpec``: a declared deployment, stored in the registry (section ``deployments``).

A deployment serves one registered model version (plus an optional canary version taking a
percentage of the traffic), optionally fetching a feature service's features first, with
its logging, batching and idle-unload settings. ``state`` is ``started`` or ``stopped``:
``tureen serve`` serves the started ones. ``history`` keeps the previously served versions so
``deploy update --rollback`` can go back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from tureen.errors import InvalidRequestError
from tureen.inference_log.record import LogMode

NAME_RE = re.compile(r"[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?")


def check_deployment_name(name: str) -> str:
    # also a Kubernetes resource name (RFC 1123 label), so `deploy export` can use it as is
    if not NAME_RE.fullmatch(name):
        raise InvalidRequestError(
            f"deployment name {name!r} is not valid: use lower-case letters, digits and '-', "
            "start and end with a letter or digit, at most 63 characters (a Kubernetes name)."
        )
    return name


@dataclass(frozen=True)
class Batching:
    max_batch_size: int = 32
    max_latency_ms: float = 5.0

    @classmethod
    def parse(cls, text: str) -> Batching:
        """``max_batch_size=32,max_latency_ms=5``."""
        values: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, _, value = part.partition("=")
            try:
                if key == "max_batch_size":
                    values[key] = int(value)
                elif key == "max_latency_ms":
                    values[key] = float(value)
                else:
                    raise ValueError(key)
            except ValueError:
                raise InvalidRequestError(
                    f"--batching {text!r}: write max_batch_size=N,max_latency_ms=MS."
                ) from None
        b = cls(**values)
        if b.max_batch_size < 1 or b.max_latency_ms < 0:
            raise InvalidRequestError("--batching: max_batch_size >= 1 and max_latency_ms >= 0.")
        return b


@dataclass(frozen=True)
class Canary:
    version: int
    percent: float

    def __post_init__(self) -> None:
        if not 0 < self.percent < 100:
            raise InvalidRequestError(
                f"canary percent {self.percent} must be between 0 and 100 (exclusive); use "
                "`deploy update --version V` to move all traffic."
            )


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    model: str
    version: int
    feature_service: str | None = None
    transformer: str | None = None
    workers: int = 1
    logging: LogMode = LogMode.NONE
    log_sink: str | None = None
    batching: Batching | None = None
    idle_unload_seconds: float | None = None
    canary: Canary | None = None
    state: str = "stopped"
    history: tuple[int, ...] = ()
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def versions(self) -> list[int]:
        return [self.version] + ([self.canary.version] if self.canary else [])

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "model": self.model, "version": self.version,
            "feature_service": self.feature_service, "transformer": self.transformer,
            "workers": self.workers, "logging": self.logging.value, "log_sink": self.log_sink,
            "batching": None if self.batching is None else {
                "max_batch_size": self.batching.max_batch_size,
                "max_latency_ms": self.batching.max_latency_ms},
            "idle_unload_seconds": self.idle_unload_seconds,
            "canary": None if self.canary is None else {
                "version": self.canary.version, "percent": self.canary.percent},
            "state": self.state, "history": list(self.history),
            "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DeploymentSpec:
        b, c = d.get("batching"), d.get("canary")
        return cls(
            name=d["name"], model=d["model"], version=int(d["version"]),
            feature_service=d.get("feature_service"), transformer=d.get("transformer"),
            workers=int(d.get("workers", 1)), logging=LogMode.parse(d.get("logging", "NONE")),
            log_sink=d.get("log_sink"),
            batching=Batching(int(b["max_batch_size"]), float(b["max_latency_ms"])) if b else None,
            idle_unload_seconds=d.get("idle_unload_seconds"),
            canary=Canary(int(c["version"]), float(c["percent"])) if c else None,
            state=d.get("state", "stopped"), history=tuple(int(v) for v in d.get("history", [])),
            created_at=datetime.fromisoformat(d["created_at"]),
            updated_at=datetime.fromisoformat(d["updated_at"]),
        )

    def touched(self, **changes: Any) -> DeploymentSpec:
        return replace(self, **changes, updated_at=datetime.now(UTC))
