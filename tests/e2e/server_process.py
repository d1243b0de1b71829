"""A tureen server running as a subprocess on 127.0.0.1, as the e2e suites start them."""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int = 0
    #: where its output goes (when captured)
    log: Path | None = None
    #: the model or feature repository it serves
    repo: Path = field(default_factory=lambda: Path("."))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (the server drains), then its exit status; killed if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
