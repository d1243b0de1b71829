"""Server scratch folders: removed by the next server once no process holds their lock."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from tureen.scratch import OWNER, owned_folder, sweep


@pytest.fixture()
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    return tmp_path


def test_a_live_folder_is_kept_and_removed_on_exit(tmp: Path) -> None:
    with owned_folder("tureen-x-") as folder:
        assert folder.parent == tmp and (folder / OWNER).is_file()
        assert sweep("tureen-x-") == [] and folder.is_dir()
    assert not folder.exists()


def test_an_orphan_is_removed_and_nothing_else(tmp: Path) -> None:
    orphan = tmp / "tureen-x-orphan"
    (orphan / "versions").mkdir(parents=True)
    (orphan / OWNER).touch()  # its lock died with its process
    foreign = tmp / "tureen-x-other"  # no lock file: not made by owned_folder
    foreign.mkdir()
    (tmp / "elsewhere").mkdir()
    (tmp / "tureen-x-link").symlink_to(tmp / "elsewhere")
    (tmp / "tureen-x-file").write_text("x")
    held = tmp / "tureen-x-held"
    held.mkdir()
    fd = os.open(held / OWNER, os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a live server (or its forked worker) holds it
    try:
        with owned_folder("tureen-x-") as mine:
            assert not orphan.exists()
            assert foreign.is_dir() and held.is_dir() and mine.is_dir()
            assert (tmp / "elsewhere").is_dir() and (tmp / "tureen-x-file").is_file()
    finally:
        os.close(fd)
    assert sweep("tureen-x-") == [held]
