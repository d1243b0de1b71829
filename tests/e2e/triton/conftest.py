"""A tureen server with the models Triton's examples use (``models/``), on both server
implementations."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.serving.conftest import Server, start_server

MODELS = Path(__file__).parent / "models"

#: model name -> (model it is written from, text replacements)
VARIANTS = {
    "simple_int8": ("simple", [('dtype = "INT32"', 'dtype = "INT8"')]),
    "custom_identity_int32": ("simple_identity", [('"BYTES"', '"INT32"')]),
}


def write_models(root: Path) -> Path:
    repo = root / "models"
    shutil.copytree(MODELS, repo)
    for name, (source, replacements) in VARIANTS.items():
        code = (MODELS / source / "1" / "model.py").read_text()
        for old, new in replacements:
            assert old in code
            code = code.replace(old, new)
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "1" / "model.py").write_text(code)
    return repo


SERVER_FLAGS = ("--allow_shared_memory", "--enable_model_control")
IMPLEMENTATIONS = {
    "own-servers": (),
    "uvicorn-grpcio": ("--http_server", "uvicorn", "--grpc_server", "grpcio"),
}


@pytest.fixture(scope="module", params=list(IMPLEMENTATIONS))
def triton_server(tmp_path_factory: pytest.TempPathFactory,
                  request: pytest.FixtureRequest) -> Iterator[Server]:
    repo = write_models(tmp_path_factory.mktemp("triton"))
    server = start_server(repo, *SERVER_FLAGS, *IMPLEMENTATIONS[request.param])
    yield server
    assert server.stop() == 0


