"""``ServingConfig``: every knob of a serving process, in one validated model.

It is the ``serving:`` section of ``tureen.yaml`` (``TUREEN_SERVING__<FIELD>`` and
``TUREEN_SERVING__LIMITS__<FIELD>`` environment variables override it; see
``tureen.config.serving_settings`` for servers run without a repo) and what ``ModelServer``
is built from; command-line flags override both. Unknown keys are rejected. ``auth``,
``tls`` and ``audit`` are ``tureen.auth.settings``'s (docs/security.md).

    serving:
      host: 127.0.0.1
      http_port: 8080
      grpc_port: 8081
      workers: 2
      enable_model_control: false
      limits: {max_request_bytes: 64MiB, head_timeout_seconds: 10}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ByteSize, ConfigDict, Field, field_validator

from tureen.auth.settings import AuditSettings, AuthSettings, TLSSettings
from tureen.errors import InvalidRequestError
from tureen.serving.versions import VersionPolicy


class LimitSettings(BaseModel):
    """What one request or connection may cost (per worker process)."""

    model_config = ConfigDict(extra="forbid")

    max_request_bytes: ByteSize = Field(
        default=ByteSize(64 * 1024 * 1024), gt=0,
        description="Largest REST request body (bigger: 413). Accepts 64MiB-style strings.")
    max_message_bytes: ByteSize = Field(
        default=ByteSize(256 * 1024 * 1024), gt=0,
        description="Largest gRPC message, received or sent (bigger: RESOURCE_EXHAUSTED).")
    max_inflight_requests: int = Field(
        default=1024, ge=0,
        description="Requests handled at once per worker; more get 503 / UNAVAILABLE (0: no "
                    "limit).")
    keep_alive_seconds: float = Field(
        default=5.0, gt=0,
        description="An idle HTTP/1.1 keep-alive connection is closed after this.")
    max_connections: int = Field(
        default=1000, ge=1,
        description="Connections served at once per worker and server; more are refused "
                    "(HTTP 503 / GOAWAY) and closed.")
    max_header_bytes: ByteSize = Field(
        default=ByteSize(64 * 1024), gt=0,
        description="Largest request head (HTTP/1.1: 431) or header list (HTTP/2).")
    head_timeout_seconds: float = Field(
        default=10.0, gt=0,
        description="A client must send a request head (HTTP/2: the preface, and each "
                    "header block) within this.")
    body_timeout_seconds: float = Field(
        default=60.0, gt=0, description="A client must send a request body within this.")
    idle_timeout_seconds: float = Field(
        default=300.0, gt=0, description="An HTTP/2 connection with no calls is closed after "
                                         "this.")
    keepalive_seconds: float = Field(
        default=60.0, gt=0, description="An HTTP/2 connection silent this long is PINGed; "
                                        "no answer within 20 s closes it.")
    max_buffered_bytes: ByteSize = Field(
        default=ByteSize(1024 * 1024 * 1024), gt=0,
        description="Request bytes all connections of a server may hold at once while "
                    "bodies arrive; beyond it clients wait (flow control).")


class ServingConfig(BaseModel):
    """The ``serving:`` section of ``tureen.yaml``."""

    model_config = ConfigDict(extra="forbid")

    host: str | None = Field(default=None, description="Address the servers bind (default "
                             "127.0.0.1; another address needs auth or --insecure).")
    http_port: int = Field(default=8080, ge=0, le=65535,
                           description="REST port (0: any free port).")
    grpc_port: int = Field(default=8081, ge=0, le=65535,
                           description="gRPC port (0: any free port).")
    workers: int = Field(default=1, ge=1, description="Worker processes sharing the ports.")
    enable_grpc: bool = Field(default=True, description="Serve OIP gRPC on grpc_port.")
    http_server: Literal["tureen", "uvicorn"] = Field(
        default="tureen", description="HTTP/1.1 implementation.")
    grpc_server: Literal["tureen", "grpcio"] = Field(
        default="tureen", description="gRPC implementation: tureen's own HTTP/2, or grpc.aio.")
    model_repository: Path | None = Field(
        default=None, description="Serve every model under DIR/<name>/<version>/.")
    version_policy: str = Field(
        default="latest",
        description="Which versions to serve: latest, latest:N, all, specific:1,3.")
    enable_model_control: bool = Field(
        default=False, description="Allow repository load/unload over the network (REST "
                           "/v2/repository/models/*/load|unload, gRPC RepositoryModelLoad|"
                           "Unload), as Triton's explicit model control mode.")
    allow_shared_memory: bool = Field(
        default=False, description="Serve the system shared memory extension (clients on "
        "this host register /dev/shm regions and pass tensors by reference). Off by default: "
        "a registered region is memory the server reads and writes for the client.")
    model_defaults: dict[str, Any] = Field(
        default_factory=dict,
        description="model-settings.json defaults for repository models, e.g. "
                    "{max_batch_size: 0}.")
    threads: int = Field(default=8, ge=1, description="Threads per served model version for sync "
                                              "handlers.")
    grace_seconds: float = Field(
        default=30.0, ge=0,
        description="On SIGTERM, how long requests in flight may take to finish.")
    model_load_timeout: float = Field(
        default=600.0, gt=0,
        description="Seconds one model may take to load before it is reported failed (the "
                    "others keep loading and serving).")
    log_level: str = Field(default="warning", description="Python logging level of the server.")
    gil_switch_ms: float | None = Field(
        default=None, gt=0,
        description="Interpreter thread switch interval (Python's default: 5 ms).")
    limits: LimitSettings = Field(default_factory=lambda: LimitSettings(),
                                  description="Per-request and per-connection limits.")
    transformers: list[str | dict[str, Any]] = Field(
        default_factory=list, description="Feature transformers: a mapping each (see the "
        "transformer configuration reference) or the path of a YAML file holding one.")
    feast_compat: bool = Field(
        default=False, description="Feast routes answer with Feast's statuses and values: a "
        "stored null is PRESENT (not NULL_VALUE) and a value past its TTL is PRESENT (not "
        "OUTSIDE_MAX_AGE). Off: tureen's exact statuses.")
    auth: AuthSettings | None = Field(
        default=None, description="Authentication and roles; auth is on when set (see "
        "docs/security.md).")
    tls: TLSSettings | None = Field(default=None, description="Certificate and key for "
                                    "HTTPS and gRPC over TLS; client CA for mTLS.")
    audit: AuditSettings | None = Field(default=None, description="Audit log of writes, "
                                        "deploys, model control and admin actions.")

    @field_validator("version_policy")
    @classmethod
    def _policy(cls, v: str) -> str:
        try:
            VersionPolicy.parse(v)
        except InvalidRequestError as exc:
            raise ValueError(str(exc)) from None
        return v

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        if v.upper() not in ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"):
            raise ValueError("use one of critical, error, warning, info, debug")
        return v.lower()

    @property
    def bind_host(self) -> str:
        return self.host or "127.0.0.1"

    def updated(self, **changes: Any) -> ServingConfig:
        """A copy with ``changes`` applied and validated (``limits`` merges field-wise)."""
        data = self.model_dump()
        limits = changes.pop("limits", None)
        if limits is not None:
            data["limits"] = {**data["limits"], **(
                limits.model_dump() if isinstance(limits, LimitSettings) else dict(limits))}
        data.update(changes)
        return ServingConfig.model_validate(data)
