"""Issue 11 critical 1: loading a model over the network never runs code from outside the
repository, never echoes the file system, leaves nothing behind on failure, and is off unless
enabled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tureen.codecs.pb import inference_pb2 as pb
from tureen.serving import DataPlane, ModelRepository, VersionPolicy
from tureen.serving.guard import GuardChain
from tureen.transports.grpc.servicer import InferenceServicer, guarded
from tureen.transports.rest import build_app

EVIL = '''
from pathlib import Path
from tureen.serving import Model
Path({marker!r}).write_text("ran")


class Evil(Model):
    def load(self):
        self.ready = True
        return True
'''


def plant(directory: Path, marker: Path) -> Path:
    (directory / "1").mkdir(parents=True)
    (directory / "1" / "model.py").write_text(EVIL.format(marker=str(marker)))
    return directory


@pytest.fixture
def setup(tmp_path: Path) -> Any:
    root = tmp_path / "repository"
    root.mkdir()
    outside = plant(tmp_path / "outside", tmp_path / "marker-outside")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.joblib").write_bytes(b"not a joblib file")
    dp = DataPlane(ModelRepository(root, VersionPolicy()), model_control=True)
    yield dp, root, tmp_path
    dp.close()


class Ctx:
    def __init__(self) -> None:
        self.aborted: tuple[str, str] | None = None

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def set_trailing_metadata(self, md: Any) -> None:
        return None

    async def abort(self, code: Any, message: str) -> None:
        self.aborted = (code.name, message)


async def grpc_load(dp: DataPlane, name: str) -> tuple[str, str] | None:
    call = guarded("RepositoryModelLoad", InferenceServicer(dp).RepositoryModelLoad,
                   GuardChain())
    ctx = Ctx()
    await call(pb.RepositoryModelLoadRequest(model_name=name), ctx)  # type: ignore[arg-type]
    return ctx.aborted


async def test_grpc_absolute_and_relative_names_never_load_outside(setup: Any) -> None:
    dp, _, tmp = setup
    elsewhere = plant(tmp / "elsewhere", tmp / "marker-abs")
    for name in (str(elsewhere), "../outside", "..", ".", "a/b", "x" * 200, "bad\nname",
                 "linked"):
        aborted = await grpc_load(dp, name)
        assert aborted is not None, name
        code, message = aborted
        assert code in ("INVALID_ARGUMENT", "NOT_FOUND"), (name, code)
        assert str(tmp) not in message, message
    assert not (tmp / "marker-abs").exists() and not (tmp / "marker-outside").exists()
    assert {m["name"] for m in dp.repository_index()} == {"broken"}


async def test_rest_traversal_is_refused_without_echoing_paths(setup: Any) -> None:
    dp, _, tmp = setup
    app = build_app(dp)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as c:
        for path in ("/v2/repository/models/../load", "/v2/repository/models/%2e%2e/load",
                     "/v2/repository/models/linked/load", "/v2/repository/models/.x/load"):
            r = await c.post(path)
            assert r.status_code in (400, 404), (path, r.status_code)
            assert str(tmp) not in r.text and "/proc" not in r.text
        r = await c.post("/v2/repository/models/broken/load")
        assert r.status_code == 400 and "failed to load" in r.json()["error"]
        assert str(tmp) not in r.text
        index = (await c.post("/v2/repository/index")).json()
    assert [m["name"] for m in index] == ["broken"]
    assert str(tmp) not in str(index)
    assert not (tmp / "marker-outside").exists()


async def test_model_control_is_off_by_default_on_both_protocols(tmp_path: Path) -> None:
    plant(tmp_path / "repo" / "m", tmp_path / "marker")
    dp = DataPlane(ModelRepository(tmp_path / "repo", VersionPolicy()))
    aborted = await grpc_load(dp, "m")
    assert aborted is not None and aborted[0] == "PERMISSION_DENIED"
    assert "--enable_model_control" in aborted[1]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(dp)),
                                 base_url="http://t") as c:
        for verb in ("load", "unload"):
            r = await c.post(f"/v2/repository/models/m/{verb}")
            assert r.status_code == 403 and "--enable_model_control" in r.json()["error"]
    assert not (tmp_path / "marker").exists()
    dp.close()


async def test_pinned_directories_load_by_name_only(tmp_path: Path) -> None:
    """``serve-model --model_dir``: the operator's directory is served under its name."""
    d = plant(tmp_path / "mine", tmp_path / "marker")
    repo = ModelRepository(None, VersionPolicy(), pinned={"m": d})
    dp = DataPlane(repo, model_control=True)
    assert await dp.load("m") == ["1"]
    assert (tmp_path / "marker").exists()
    with pytest.raises(Exception, match="not valid"):
        await dp.load(str(d))
    dp.close()
