"""Start and stop a throw-away local Redis Cluster (3 primaries on spare loopback ports)."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def spare_ports(n: int, cluster_bus: bool = False) -> list[int]:
    """``n`` free loopback ports; with ``cluster_bus``, port+10000 is free too (Redis Cluster
    talks to peers on it, so ports must stay at or below 55535)."""
    rng = random.Random()
    out: list[int] = []
    while len(out) < n:
        p = rng.randrange(20_000, 45_000)
        if p not in out and _free(p) and (not cluster_bus or _free(p + 10_000)):
            out.append(p)
    return out


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server on port {port} did not start within {timeout}s")


@dataclass
class RedisProcess:
    """One redis-server child process (standalone or a cluster node)."""

    port: int
    workdir: Path
    cluster: bool = False
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> RedisProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary() or "redis-server", "--port", str(self.port),
            "--bind", "127.0.0.1", "--dir", str(self.workdir), "--save", "",
            "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning",
        ]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file",
                     f"nodes-{self.port}.conf", "--cluster-node-timeout", "2000"]
        log = open(self.workdir / "redis.log", "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        _wait_port(self.port, 10.0)
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


@dataclass
class LocalCluster:
    workdir: Path
    size: int = 3
    nodes: list[RedisProcess] = field(default_factory=list)

    def start(self) -> LocalCluster:
        ports = spare_ports(self.size, cluster_bus=True)
        self.nodes = [RedisProcess(p, self.workdir / str(p), cluster=True) for p in ports]
        try:
            for n in self.nodes:
                n.start()
            subprocess.run(
                ["redis-cli", "--cluster", "create",
                 *[f"127.0.0.1:{p}" for p in ports], "--cluster-replicas", "0", "--cluster-yes"],
                check=True, capture_output=True, timeout=60,
            )
            self.wait_ok(30.0)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ok(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [
                subprocess.run(["redis-cli", "-p", str(n.port), "cluster", "info"],
                               capture_output=True, text=True, timeout=5).stdout
                for n in self.nodes
            ]
            if all("cluster_state:ok" in s for s in states):
                return
            time.sleep(0.1)
        raise RuntimeError("the local Redis Cluster did not reach cluster_state:ok")

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def stop(self) -> None:
        for n in self.nodes:
            n.kill()
