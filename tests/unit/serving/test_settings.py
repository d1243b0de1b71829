"""ServingConfig from tureen.yaml and TUREEN_SERVING__*, ModelServer built from them, and
ports bound once (a second server on a port fails with a clear error)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tureen.config import load_config, serving_settings
from tureen.errors import ConfigError, PortInUseError
from tureen.serving import ModelServer, ServingConfig


def test_defaults_env_and_unknown_keys() -> None:
    s = serving_settings({}, environ={})
    assert (s.http_port, s.grpc_port, s.workers, s.enable_model_control) == (8080, 8081, 1, False)
    s = serving_settings({"http_port": 9000, "limits": {"max_request_bytes": "2MiB"}}, environ={
        "TUREEN_SERVING__GRPC_PORT": "9001",
        "TUREEN_SERVING__LIMITS__MAX_INFLIGHT_REQUESTS": "7",
    })
    assert (s.http_port, s.grpc_port) == (9000, 9001)
    assert (s.limits.max_request_bytes, s.limits.max_inflight_requests) == (2 * 1024 * 1024, 7)
    with pytest.raises(ConfigError, match=r"serving\.http_prot"):
        serving_settings({"http_prot": 1}, environ={})
    with pytest.raises(ConfigError, match=r"serving\.limits\.max_requests"):
        serving_settings({}, environ={"TUREEN_SERVING__LIMITS__MAX_REQUESTS": "1"})
    with pytest.raises(ConfigError, match="version_policy"):
        serving_settings({"version_policy": "newest"}, environ={})


def test_serving_section_of_tureen_yaml(tmp_path: Path) -> None:
    (tmp_path / "tureen.yaml").write_text(
        "project: p\nserving:\n  http_port: 7000\n  transformers: [t.yaml]\n")
    cfg = load_config(tmp_path, environ={"TUREEN_SERVING__WORKERS": "3"})
    assert (cfg.serving.http_port, cfg.serving.workers) == (7000, 3)
    assert cfg.serving.transformers == ["t.yaml"]
    (tmp_path / "tureen.yaml").write_text("project: p\nserving:\n  htp_port: 7000\n")
    with pytest.raises(ConfigError, match=r"tureen.yaml:3: field `serving.htp_port`"):
        load_config(tmp_path, environ={})


def test_model_server_takes_settings_and_keyword_overrides() -> None:
    base = ServingConfig(http_port=1234, workers=2)
    server = ModelServer(0, settings=base, enable_grpc=False, max_request_bytes=1000)
    assert server.settings.http_port == 0 and server.settings.workers == 2
    assert server.settings.limits.max_request_bytes == 1000
    assert server.kinds == ["http"]
    with pytest.raises(ConfigError, match=r"unknown option.*http_prot"):
        ModelServer(http_prot=1)


def test_a_second_server_on_the_same_port_is_refused() -> None:
    first = ModelServer(0, 0, host="127.0.0.1")
    first.bind()
    try:
        second = ModelServer(first.http_port, 0, host="127.0.0.1")
        with pytest.raises(PortInUseError, match=rf"127.0.0.1:{first.http_port} \(HTTP\): the "
                                                 r"address is already in use.*--http_port"):
            second.bind()
        third = ModelServer(0, first.grpc_port, host="127.0.0.1")
        with pytest.raises(PortInUseError, match=r"\(gRPC\).*--grpc_port"):
            third.bind()
        grpcio = ModelServer(0, first.grpc_port, host="127.0.0.1", grpc_server="grpcio")
        with pytest.raises(PortInUseError):
            grpcio.bind()
    finally:
        first.close_sockets()


def test_a_reuse_port_listener_cannot_share_our_port() -> None:
    """Another process listening with SO_REUSEPORT (as the old server did) makes our bind
    fail instead of splitting the traffic with it."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(PortInUseError):
            ModelServer(port, 0, host="127.0.0.1").bind()


def test_connection_caps_fit_the_file_descriptors_the_process_may_open() -> None:
    """Issue 11 #11: 1,100 trickling connections blocked every request at 1,024 fds; the
    caps must refuse (503 / GOAWAY) before accept() runs out of descriptors."""
    from tureen.serving.server import connection_cap

    assert connection_cap(1000, servers=2, fd_limit=20_000) == (1000, None)
    cap, warning = connection_cap(1000, servers=2, fd_limit=1024)
    assert cap == (1024 - 128) // 2 and warning is not None
    assert "limits.max_connections" in warning and "ulimit -n" in warning
    assert "\n" not in warning
    assert connection_cap(1000, servers=1, fd_limit=100)[0] == 1  # never 0
