"""Regenerate ``inference_pb2.py`` / ``.pyi`` from ``inference.proto``.

Run ``python -m tureen.codecs.pb.gen``.

Needs ``grpcio-tools`` (a test extra). The generated module registers its file in a private
descriptor pool, so it can live in one process with Triton's or KServe's own generated
``inference`` package (same message names) without "duplicate symbol" errors.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
PROTO = "inference.proto"
_DEFAULT_POOL = "_descriptor_pool.Default().AddSerializedFile("
_PRIVATE_POOL = "_descriptor_pool.DescriptorPool().AddSerializedFile("
_HEADER = "# ruff: noqa\n# mypy: ignore-errors\n"


def generate(out_dir: Path = HERE) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{HERE}", f"--python_out={tmp}",
             f"--pyi_out={tmp}", str(HERE / PROTO)],
            check=True,
        )
        code = (Path(tmp) / "inference_pb2.py").read_text()
        if _DEFAULT_POOL not in code:
            raise RuntimeError("protoc output changed shape; update tureen.codecs.pb.gen")
        code = code.replace(_DEFAULT_POOL, _PRIVATE_POOL)
        stub = (Path(tmp) / "inference_pb2.pyi").read_text()
        (out_dir / "inference_pb2.py").write_text(_HEADER + code)
        (out_dir / "inference_pb2.pyi").write_text(_HEADER + stub)


if __name__ == "__main__":
    generate()
