"""System shared memory regions (the OIP/Triton shared-memory extension).

A same-host client creates a POSIX shared memory object (``/dev/shm/<key>``), registers a
region of it under a name (key, offset, byte size), and then sends inputs and asks for
outputs by reference — region name, offset into the region, byte size — instead of bytes
over the socket.

Every reference is checked before memory is touched: the region must be registered, the
referenced span must lie inside it, and the object must still be as large as the region
(a client that shrank it after registering would otherwise crash the server with SIGBUS).
A span outside the region is an ``InvalidRequestError`` (400), never a read of other memory.
Inputs are read-only views of the mapping (no copy); outputs are copied in. Regions are
unmapped on unregister and on ``close`` (shutdown); a mapping still viewed by a request in
flight is released when that request drops its views.

With several worker processes, registrations live in ``share_dir`` (one small file per
region) so every worker sees the same regions; each use re-checks the file, so an
unregister in one worker takes effect in all.
"""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tureen.errors import InvalidRequestError, NotFoundError

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_KEY = re.compile(r"/?[A-Za-z0-9][A-Za-z0-9._-]{0,250}")
MAX_REGIONS = 1024
CUDA_UNSUPPORTED = ("CUDA shared memory is not supported: tureen runs models on the CPU and "
                    "cannot map CUDA IPC handles. Register system shared memory instead "
                    "(REST POST /v2/systemsharedmemory/region/{name}/register, gRPC "
                    "SystemSharedMemoryRegister).")
_SHM_DIR = "/dev/shm"


@dataclass
class Region:
    name: str
    key: str
    offset: int
    byte_size: int
    fd: int
    mapping: mmap.mmap
    #: identity of the registration record (workers > 1), to notice re-registration
    generation: tuple[int, int] = (0, 0)

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "offset": self.offset,
                "byte_size": self.byte_size}

    def close(self) -> None:
        try:
            self.mapping.close()
        except BufferError:
            pass  # a request still views it: unmapped when that view is released
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _check_int(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequestError(f"shared memory {field} must be a non-negative integer, not "
                                  f"{value!r}.")
    return value


def _open(key: str) -> int:
    name = key.lstrip("/")
    flags = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        if sys.platform.startswith("linux"):
            return os.open(os.path.join(_SHM_DIR, name), flags)
        import _posixshmem  # type: ignore[import-not-found]  # multiprocessing's shm_open

        return int(_posixshmem.shm_open("/" + name, os.O_RDWR, mode=0o600))
    except FileNotFoundError:
        raise NotFoundError(f"no shared memory object with key {key!r} exists; create it "
                            "(shm_open) before registering it.") from None
    except OSError as exc:
        raise InvalidRequestError(f"cannot open shared memory key {key!r}: "
                                  f"{exc.strerror}.") from None


class SharedMemoryRegistry:
    def __init__(self, share_dir: str | Path | None = None, max_regions: int = MAX_REGIONS
                 ) -> None:
        self._regions: dict[str, Region] = {}
        self._share = Path(share_dir) if share_dir else None
        self.max_regions = max_regions

    # control (register / status / unregister)

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidRequestError(
                f"shared memory region name {str(name)[:64]!r} is not valid; use 1-128 "
                "letters, digits, '.', '_' or '-'.")
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise InvalidRequestError(
                f"shared memory key {str(key)[:64]!r} is not valid; a key names a POSIX "
                "shared memory object, e.g. '/input_simple' (letters, digits, '.', '_', '-').")
        if key.lstrip("/").startswith("sem."):
            raise InvalidRequestError(
                f"shared memory key {key!r} names a POSIX semaphore, not a data region.")
        offset = _check_int("offset", offset)
        byte_size = _check_int("byte_size", byte_size)
        if byte_size == 0:
            raise InvalidRequestError("shared memory byte_size must be at least 1.")
        self._refresh(name)
        if name in self._regions:
            raise InvalidRequestError(
                f"shared memory region {name!r} is already registered; unregister it first.")
        if len(self._names()) >= self.max_regions:
            raise InvalidRequestError(
                f"{self.max_regions} shared memory regions are registered, the most this "
                "server keeps; unregister some first.")
        region = self._map(name, key, offset, byte_size)
        if self._share is not None:
            region.generation = self._write_record(region)
        self._regions[name] = region
        log.info("registered shared memory region %s (%s, %d bytes at %d)", name, key,
                 byte_size, offset)

    def status(self, name: str | None = None) -> list[dict[str, Any]]:
        if name:
            return [self._get(name).status()]
        return [self._get(n).status() for n in sorted(self._names())]

    def unregister(self, name: str | None = None) -> None:
        if name:
            self._get(name)  # NotFoundError when it is not registered
            names = [name]
        else:
            names = self._names()
        for n in names:
            region = self._regions.pop(n, None)
            if region is not None:
                region.close()
            if self._share is not None:
                with contextlib.suppress(OSError):
                    (self._share / f"{n}.json").unlink()

    def close(self) -> None:
        """Unmap every region of this process (shutdown); the registrations of other workers
        are theirs to drop."""
        for region in self._regions.values():
            region.close()
        self._regions.clear()

    # data

    def read(self, name: str, offset: int, byte_size: int) -> memoryview:
        """A read-only view of ``byte_size`` bytes at ``offset`` into region ``name``."""
        region, start = self._span(name, offset, byte_size)
        return memoryview(region.mapping)[start:start + byte_size].toreadonly()

    def write(self, name: str, offset: int, byte_size: int, data: bytes | memoryview) -> int:
        """Copy ``data`` into the referenced span (it must fit); returns the bytes written."""
        region, start = self._span(name, offset, byte_size)
        n = len(data)
        if n > byte_size:
            raise InvalidRequestError(
                f"the output needs {n} bytes but shared memory region {name!r} was given "
                f"shared_memory_byte_size {byte_size}; reference a larger span.")
        region.mapping[start:start + n] = data
        return n

    # internals

    def _span(self, name: str, offset: int, byte_size: int) -> tuple[Region, int]:
        offset = _check_int("offset", offset)
        byte_size = _check_int("byte_size", byte_size)
        region = self._get(name)
        if offset + byte_size > region.byte_size:
            raise InvalidRequestError(
                f"the reference to {byte_size} bytes at offset {offset} lies outside shared "
                f"memory region {name!r} ({region.byte_size} bytes); stay inside the region.")
        try:
            size = os.fstat(region.fd).st_size
        except OSError:
            size = -1
        if size < region.offset + region.byte_size:
            self._drop(name)
            raise InvalidRequestError(
                f"shared memory region {name!r} shrank below its registered size after it "
                "was registered; it is unregistered now. Register it again.")
        return region, region.offset + offset

    def _names(self) -> list[str]:
        if self._share is None:
            return list(self._regions)
        try:
            return [p.stem for p in self._share.glob("*.json")]
        except OSError:
            return []

    def _get(self, name: str) -> Region:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidRequestError(f"shared memory region name {str(name)[:64]!r} is not "
                                      "valid.")
        self._refresh(name)
        region = self._regions.get(name)
        if region is None:
            raise NotFoundError(f"shared memory region {name!r} is not registered; register "
                                "it first (see .../systemsharedmemory/.../status).")
        return region

    def _drop(self, name: str) -> None:
        region = self._regions.pop(name, None)
        if region is not None:
            region.close()

    def _map(self, name: str, key: str, offset: int, byte_size: int) -> Region:
        fd = _open(key)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise InvalidRequestError(f"shared memory key {key!r} is not a shared memory "
                                          "object.")
            end = offset + byte_size
            if end > st.st_size:
                raise InvalidRequestError(
                    f"shared memory object {key!r} holds {st.st_size} bytes; a region of "
                    f"{byte_size} bytes at offset {offset} does not fit. Make the object "
                    "larger or the region smaller.")
            mapping = mmap.mmap(fd, end)
        except BaseException:
            os.close(fd)
            raise
        return Region(name, key, offset, byte_size, fd, mapping)

    def _write_record(self, region: Region) -> tuple[int, int]:
        assert self._share is not None
        self._share.mkdir(parents=True, exist_ok=True)
        path = self._share / f"{region.name}.json"
        tmp = self._share / f".{region.name}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"key": region.key, "offset": region.offset,
                                   "byte_size": region.byte_size}))
        tmp.replace(path)
        st = path.stat()
        return (st.st_ino, st.st_mtime_ns)

    def _refresh(self, name: str) -> None:
        """Workers > 1: make this process's mapping of ``name`` match the shared record."""
        if self._share is None:
            return
        path = self._share / f"{name}.json"
        try:
            st = path.stat()
        except OSError:
            self._drop(name)
            return
        gen = (st.st_ino, st.st_mtime_ns)
        local = self._regions.get(name)
        if local is not None and local.generation == gen:
            return
        self._drop(name)
        try:
            rec = json.loads(path.read_text())
            region = self._map(name, str(rec["key"]), int(rec["offset"]),
                               int(rec["byte_size"]))
        except (OSError, ValueError, KeyError, InvalidRequestError, NotFoundError) as exc:
            log.warning("shared memory region %s cannot be mapped here: %s", name, exc)
            return
        region.generation = gen
        self._regions[name] = region
