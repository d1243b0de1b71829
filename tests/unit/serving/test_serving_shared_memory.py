"""System shared memory: registered regions, bounds-checked references, unmapped when done."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tureen.errors import InvalidRequestError, NotFoundError
from tureen.serving import DataPlane, InferInput, InferRequest
from tureen.serving.inference import RequestedOutput
from tureen.serving.shared_memory import SharedMemoryRegistry

from .conftest import Doubler, loaded


@pytest.fixture
def shm() -> Iterator[shared_memory.SharedMemory]:
    block = shared_memory.SharedMemory(name=f"tureen-test-{uuid.uuid4().hex[:12]}",
                                       create=True, size=4096)
    yield block
    block.close()
    block.unlink()


def _key(block: shared_memory.SharedMemory) -> str:
    return "/" + block.name.lstrip("/")


def test_register_status_unregister(shm: shared_memory.SharedMemory) -> None:
    reg = SharedMemoryRegistry()
    reg.register("in", _key(shm), 0, 1024)
    reg.register("out", _key(shm), 1024, 2048)
    assert reg.status() == [
        {"name": "in", "key": _key(shm), "offset": 0, "byte_size": 1024},
        {"name": "out", "key": _key(shm), "offset": 1024, "byte_size": 2048}]
    assert reg.status("out")[0]["byte_size"] == 2048
    with pytest.raises(InvalidRequestError, match="already registered"):
        reg.register("in", _key(shm), 0, 8)
    reg.unregister("in")
    assert [r["name"] for r in reg.status()] == ["out"]
    with pytest.raises(NotFoundError, match="not registered"):
        reg.status("in")
    reg.unregister()
    assert reg.status() == []


@pytest.mark.parametrize(("key", "offset", "size", "needle"), [
    ("/../etc/passwd", 0, 8, "not valid"),
    ("/a/b", 0, 8, "not valid"),
    ("/sem.mp-lock", 0, 8, "semaphore"),
    ("", 0, 8, "not valid"),
    ("/tureen-no-such-object", 0, 8, "no shared memory object"),
    (None, 4000, 200, "does not fit"),  # past the end of the object
    (None, 0, 0, "at least 1"),
    (None, -1, 8, "non-negative"),
])
def test_register_rejects_bad_regions(shm: shared_memory.SharedMemory, key: str | None,
                                      offset: int, size: int, needle: str) -> None:
    with pytest.raises((InvalidRequestError, NotFoundError), match=needle):
        SharedMemoryRegistry().register("r", _key(shm) if key is None else key, offset, size)


def test_register_refuses_a_symlink_out_of_dev_shm(tmp_path: Path) -> None:
    """A key is a shared memory object, never a way to map another file."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"x" * 4096)
    link = Path("/dev/shm") / f"tureen-test-link-{uuid.uuid4().hex[:8]}"
    link.symlink_to(secret)
    try:
        with pytest.raises(InvalidRequestError, match="cannot open"):
            SharedMemoryRegistry().register("r", "/" + link.name, 0, 16)
    finally:
        link.unlink()


def test_references_are_bounds_checked(shm: shared_memory.SharedMemory) -> None:
    reg = SharedMemoryRegistry()
    reg.register("r", _key(shm), 1000, 100)
    shm.buf[1000:1004] = b"abcd"
    assert bytes(reg.read("r", 0, 4)) == b"abcd"
    for offset, size in ((0, 101), (96, 5), (100, 1), (2**62, 1)):
        with pytest.raises(InvalidRequestError, match="outside shared memory region"):
            reg.read("r", offset, size)
        with pytest.raises(InvalidRequestError, match="outside shared memory region"):
            reg.write("r", offset, size, b"z")
    with pytest.raises(InvalidRequestError, match="needs 5 bytes"):
        reg.write("r", 0, 4, b"12345")
    assert reg.write("r", 96, 4, b"wxyz") == 4 and bytes(shm.buf[1096:1100]) == b"wxyz"
    with pytest.raises(NotFoundError):
        reg.read("ghost", 0, 1)
    view = reg.read("r", 0, 4)
    with pytest.raises(TypeError):
        view[0] = 0  # inputs are read-only views


def test_a_region_shrunk_after_registering_is_refused_not_a_crash(
        shm: shared_memory.SharedMemory) -> None:
    reg = SharedMemoryRegistry()
    reg.register("r", _key(shm), 0, 4096)
    os.truncate(Path("/dev/shm") / shm.name.lstrip("/"), 16)  # what a hostile client can do
    with pytest.raises(InvalidRequestError, match="shrank"):
        reg.read("r", 4000, 8)  # reading the mapping now would be SIGBUS
    with pytest.raises(NotFoundError):
        reg.read("r", 0, 8)


def test_unregister_while_a_view_is_held_then_close(shm: shared_memory.SharedMemory) -> None:
    reg = SharedMemoryRegistry()
    reg.register("r", _key(shm), 0, 64)
    reg.register("s", _key(shm), 64, 64)
    shm.buf[0:2] = b"ok"
    view = reg.read("r", 0, 2)
    region = reg._regions["r"]
    reg.unregister("r")  # a request still holds `view`: no crash, no use after unmap
    assert bytes(view) == b"ok"
    view.release()
    other = reg._regions["s"]
    reg.close()
    assert other.mapping.closed and reg._regions == {}
    del region


def _shm_request(model: str, region: str, size: int, out: str | None = None) -> InferRequest:
    params: dict[str, Any] = {"shared_memory_region": region, "shared_memory_byte_size": size}
    req = InferRequest(model, [InferInput("x", "FP32", [1, 2], np.empty(0), params)])
    if out is not None:
        req.outputs = [RequestedOutput("y", None, {"shared_memory_region": out,
                                                   "shared_memory_byte_size": 8})]
    return req


async def test_inference_reads_and_writes_shared_memory(shm: shared_memory.SharedMemory) -> None:
    dp = DataPlane()
    dp.shared_memory = SharedMemoryRegistry()
    dp.register(loaded(Doubler("m")))
    dp.shared_memory.register("in", _key(shm), 0, 8)
    dp.shared_memory.register("out", _key(shm), 8, 8)
    np.ndarray((2,), dtype=np.float32, buffer=shm.buf)[:] = [1.5, 2.0]
    resp = await dp.infer(_shm_request("m", "in", 8, out="out"))
    assert np.ndarray((2,), dtype=np.float32, buffer=shm.buf, offset=8).tolist() == [3.0, 4.0]
    assert resp.outputs[0].parameters["shared_memory_region"] == "out"
    assert resp.outputs[0].parameters["shared_memory_byte_size"] == 8
    with pytest.raises(InvalidRequestError, match="has shape"):
        await dp.infer(_shm_request("m", "in", 4))  # byte size does not match the shape
    with pytest.raises(InvalidRequestError, match="outside"):
        bad = _shm_request("m", "in", 8)
        bad.inputs[0].parameters["shared_memory_offset"] = 4
        await dp.infer(bad)
    dp.close()
    assert dp.shared_memory.status() == []


async def test_shared_memory_is_off_unless_enabled() -> None:
    dp = DataPlane()
    dp.register(loaded(Doubler("m")))
    with pytest.raises(InvalidRequestError, match="--allow_shared_memory"):
        await dp.infer(_shm_request("m", "in", 8))


def test_workers_share_registrations(tmp_path: Path, shm: shared_memory.SharedMemory) -> None:
    a, b = SharedMemoryRegistry(tmp_path), SharedMemoryRegistry(tmp_path)
    a.register("r", _key(shm), 0, 16)
    shm.buf[0:3] = b"hey"
    assert bytes(b.read("r", 0, 3)) == b"hey" and b.status()[0]["name"] == "r"
    a.unregister("r")
    with pytest.raises(NotFoundError):
        b.read("r", 0, 3)
    a.register("r", _key(shm), 8, 8)  # registered again elsewhere: b follows
    assert b.status("r")[0]["offset"] == 8
    a.close()
    b.close()
