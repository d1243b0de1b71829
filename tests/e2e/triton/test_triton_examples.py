"""Triton's own Python client examples, unmodified, against tureen.

The examples (``tests/third_party/triton_client_examples``, BSD-licensed test data) run as
programs with only their address argument; the server serves tureen ``model.py`` models this
module writes (``models/``): ``simple`` (INT32 add/sub), ``simple_int8``, ``simple_string``,
``simple_identity``, ``custom_identity_int32``, ``simple_sequence`` and the decoupled
``repeat_int32``. Every example either passes or is listed in ``CANNOT_PASS`` with the reason
(the same list is in docs/serving.md).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tests.e2e.serving.conftest import Server, start_server

from .conftest import SERVER_FLAGS, write_models

EXAMPLES = Path(__file__).parents[2] / "third_party" / "triton_client_examples"
SHIM = Path(__file__).parent / "shim"

#: example -> the argument lists it runs with ({http} / {grpc}: the server's address)
PASSING: dict[str, list[list[str]]] = {
    "simple_http_infer_client.py": [["-u", "{http}"]],
    "simple_http_aio_infer_client.py": [["-u", "{http}"]],
    "simple_http_async_infer_client.py": [["-u", "{http}"]],
    "simple_http_string_infer_client.py": [["-u", "{http}"]],
    "simple_http_sequence_sync_infer_client.py": [["-u", "{http}"]],
    "simple_http_shm_client.py": [["-u", "{http}"]],
    "simple_http_shm_string_client.py": [["-u", "{http}"]],
    "simple_grpc_infer_client.py": [["-u", "{grpc}"]],
    "simple_grpc_aio_infer_client.py": [["-u", "{grpc}"]],
    "simple_grpc_async_infer_client.py": [["-u", "{grpc}"]],
    "simple_grpc_custom_args_client.py": [["-u", "{grpc}"]],
    "simple_grpc_keepalive_client.py": [["-u", "{grpc}"]],
    "simple_grpc_string_infer_client.py": [["-u", "{grpc}"]],
    "simple_grpc_sequence_sync_infer_client.py": [["-u", "{grpc}"]],
    "simple_grpc_sequence_stream_infer_client.py": [["-u", "{grpc}"]],
    "simple_grpc_aio_sequence_stream_infer_client.py": [["-u", "{grpc}"]],
    "simple_grpc_custom_repeat.py": [["-u", "{grpc}"]],
    "simple_grpc_shm_client.py": [["-u", "{grpc}"]],
    "simple_grpc_shm_string_client.py": [["-u", "{grpc}"]],
    "grpc_explicit_int_content_client.py": [["-u", "{grpc}"]],
    "grpc_explicit_int8_content_client.py": [["-u", "{grpc}"]],
    "grpc_explicit_byte_content_client.py": [["-u", "{grpc}"]],
    "reuse_infer_objects_client.py": [["-u", "{http}"], ["-i", "grpc", "-u", "{grpc}"]],
}
#: examples that change the model repository: each runs against a server of its own
MODEL_CONTROL = {"simple_http_model_control.py": [["-u", "{http}"]]}

#: examples that cannot pass against tureen, and why (docs/serving.md lists them too)
CANNOT_PASS = {
    "simple_http_health_metadata.py": "asserts that the server's name is 'triton'",
    "simple_grpc_health_metadata.py": "asserts that the server's name is 'triton'",
    "simple_http_cudashm_client.py": "needs CUDA (CUDA shared memory)",
    "simple_grpc_cudashm_client.py": "needs CUDA (CUDA shared memory)",
    "grpc_client.py": "needs Triton's densenet_onnx test model",
    "image_client.py": "needs Triton's image classification models (densenet_onnx, "
                       "inception_graphdef) and Triton's classification extension",
    "grpc_image_client.py": "needs Triton's image classification models and Triton's "
                            "classification extension",
    "ensemble_image_client.py": "needs Triton's image preprocessing ensemble",
    "simple_grpc_model_control.py": "asserts Triton's test repository (8 models) and Triton's "
                                    "INTERNAL status for an oversized file override; tureen "
                                    "refuses file overrides as INVALID_ARGUMENT",
    "memory_growth_test.py": "talks to the fixed address localhost:8000 (no address "
                             "argument); run by test_memory_growth when that port is free",
}


def example_env() -> dict[str, str]:
    """The environment the examples run in: tritonclient's shared-memory utilities import
    ``pkg_resources``, gone from setuptools 81; without it a shim (``shim/``) stands in."""
    env = dict(os.environ)
    if importlib.util.find_spec("pkg_resources") is None:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(SHIM), env.get("PYTHONPATH", "")) if p)
    return env


def run_example(name: str, args: list[str], server: Server, timeout: float = 120) -> None:
    path = EXAMPLES / name
    argv = [a.format(http=f"127.0.0.1:{server.http_port}", grpc=server.grpc_target)
            for a in args]
    proc = subprocess.run([sys.executable, str(path), *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=path.parent, env=example_env())
    report = f"{name} {argv} exited {proc.returncode}\n{proc.stdout[-3000:]}\n" \
             f"{proc.stderr[-3000:]}"
    assert proc.returncode == 0, report
    if 'print("PASS' in path.read_text():  # examples that say so when they passed
        assert "PASS" in proc.stdout, report


def test_every_example_is_accounted_for() -> None:
    on_disk = {p.name for p in EXAMPLES.glob("*.py")}
    listed = set(PASSING) | set(MODEL_CONTROL) | set(CANNOT_PASS)
    assert on_disk == listed
    assert not (set(PASSING) | set(MODEL_CONTROL)) & set(CANNOT_PASS)


@pytest.mark.parametrize(("example", "args"), [
    (name, args) for name, variants in sorted(PASSING.items()) for args in variants])
def test_example_passes(example: str, args: list[str], triton_server: Server) -> None:
    run_example(example, args, triton_server)


@pytest.mark.parametrize(("example", "args"), [
    (name, args) for name, variants in sorted(MODEL_CONTROL.items()) for args in variants])
def test_model_control_example_passes(example: str, args: list[str], tmp_path: Path) -> None:
    server = start_server(write_models(tmp_path), *SERVER_FLAGS)
    try:
        run_example(example, args, server)
    finally:
        assert server.stop() == 0


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_memory_growth(tmp_path: Path) -> None:
    """memory_growth_test.py has no address argument: it needs ports 8000 (and 8001)."""
    if not (_free(8000) and _free(8001)):
        pytest.skip("ports 8000/8001 are in use; memory_growth_test.py talks only to them")
    from tests.e2e.serving.conftest import wait_ready

    server = start_server(write_models(tmp_path), "--http_port", "8000", "--grpc_port", "8001",
                          wait=False)
    server.http_port, server.grpc_port = 8000, 8001
    try:
        wait_ready(server)
        for protocol in ("HTTP", "GRPC"):
            run_example("memory_growth_test.py", ["-i", protocol, "-r", "20"], server)
    finally:
        assert server.stop() == 0
