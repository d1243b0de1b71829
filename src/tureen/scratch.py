"""Temporary folders a server makes for itself, and the sweep of those a killed server left.

A server removes its folders on the way out, and when its supervisor is killed the last worker
out does (``tureen.serving.server``). A single-process server killed with SIGKILL leaves no one
to do it, so every folder holds a lock file, ``.owner``, locked (``flock``) by the server for as
long as it, or any worker forked from it, lives. The next server that makes such a folder first
removes each one of the current user's whose lock it can take: the lock is free exactly when
every process that held it is gone (the kernel drops it with the last descriptor, whatever
killed the process).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

OWNER = ".owner"


@contextlib.contextmanager
def owned_folder(prefix: str) -> Iterator[Path]:
    """A new folder named ``prefix…`` in the temp directory, removed on exit; orphans of the
    same prefix are removed first."""
    sweep(prefix)
    with tempfile.TemporaryDirectory(prefix=prefix) as name:
        folder = Path(name)
        # lock first, then give the lock file its name: a sweeper never sees it unlocked
        fd = os.open(folder / ".owner.new", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(folder / ".owner.new", folder / OWNER)
            yield folder
        finally:
            os.close(fd)


def sweep(prefix: str, root: Path | None = None) -> list[Path]:
    """Remove the folders ``prefix…`` in ``root`` (the temp directory) that this user's
    servers left behind: those whose ``.owner`` lock no process holds. Returns them."""
    base = Path(root or tempfile.gettempdir())
    removed: list[Path] = []
    uid = os.getuid()
    try:
        candidates = [p for p in base.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for folder in candidates:
        try:
            st = folder.lstat()
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
                continue
            fd = os.open(folder / OWNER, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:  # gone, not ours, or not made by owned_folder: leave it alone
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its server still runs
            os.close(fd)
            continue
        try:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(fd)
    return removed
