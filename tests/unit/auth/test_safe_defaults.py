"""Where servers may listen without auth, and what exported manifests say about it."""

from __future__ import annotations

import pytest

from tureen.auth.bind import check_bind, is_loopback
from tureen.deployments.export import bind_args, manifest_text
from tureen.errors import ConfigError


def test_loopback_is_always_fine_and_other_binds_need_auth_or_insecure() -> None:
    for host in ("127.0.0.1", "127.0.0.5", "::1", "[::1]", "localhost"):
        assert is_loopback(host)
        assert check_bind(host, auth=False, tls=False, insecure=False) is None
    for host in ("0.0.0.0", "::", "10.0.0.4", "example.com"):
        assert not is_loopback(host)
        with pytest.raises(ConfigError) as exc:
            check_bind(host, auth=False, tls=True, insecure=False)
        assert "--insecure" in str(exc.value) and "\n" not in str(exc.value)
    warning = check_bind("0.0.0.0", auth=True, tls=False, insecure=False)
    assert warning is not None and "TLS" in warning
    assert check_bind("0.0.0.0", auth=False, tls=False, insecure=True) is not None
    assert check_bind("0.0.0.0", auth=True, tls=True, insecure=False) is None


def test_manifests_state_bind_and_auth() -> None:
    assert bind_args("server") == ["--host", "0.0.0.0"]
    assert bind_args("mesh") == ["--host", "0.0.0.0", "--insecure"]
    text = manifest_text({"spec": {"args": ["--model_name", "m", *bind_args("mesh")]}})
    lines = text.splitlines()
    i = lines.index("  - --insecure")
    assert lines[i - 1].startswith("  # ") and "sidecar" in text
    assert "#" not in manifest_text({"spec": {"args": bind_args("server")}})
