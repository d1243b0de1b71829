"""TorchScript and TensorFlow models: registered, then served by the built-in runtimes."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from tests.services import require_module

from tureen.models import ModelStore
from tureen.serving.inference import InferInput, InferRequest
from tureen.serving.runtimes import model_from_dir


def test_torchscript_register_and_serve(tmp_path: Path) -> None:
    torch: Any = require_module("torch", "pip install torch==2.13.0 (CPU) or 'tureen[torch]'")

    class Net(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(3, 1)
            with torch.no_grad():
                self.lin.weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
                self.lin.bias.fill_(0.5)

        def forward(self, x: Any) -> Any:
            return torch.sigmoid(self.lin(x))

    src = tmp_path / "net.pt"
    with warnings.catch_warnings():  # torch 2.13 deprecates jit.script; TorchScript still loads
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(Net(), torch.zeros(2, 3)), str(src))
    mv = ModelStore(tmp_path / "models").register("net", src, "pytorch", metrics={"auc": 0.5})
    assert mv.framework == "torchscript" and mv.files == ("net.pt",)
    model = model_from_dir("net", "1", Path(mv.uri), {})
    assert type(model).__name__ == "TorchScriptModel"
    model.load()
    x = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0]], dtype=np.float32)
    out = model.predict(x)
    want = 1 / (1 + np.exp(-(x @ np.array([1.0, 2.0, 3.0]) + 0.5)))
    np.testing.assert_allclose(out[:, 0], want, rtol=1e-6)
    out2 = model.predict({"instances": x.tolist()})
    np.testing.assert_allclose(out2[:, 0], want, rtol=1e-6)
    assert model.outputs[0].datatype == "FP32"
    model.unload()


def test_tensorflow_register_and_serve(tmp_path: Path) -> None:
    tf: Any = require_module("tensorflow", "pip install 'tureen[tensorflow]'")

    class Lin(tf.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable([[1.0], [2.0], [3.0]])

        @tf.function(  # type: ignore[untyped-decorator]
            input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")]
        )
        def __call__(self, x: Any) -> dict[str, Any]:
            return {"score": tf.matmul(x, self.w)}

    m = Lin()
    src = tmp_path / "saved"
    tf.saved_model.save(m, str(src), signatures={"serving_default": m.__call__})
    mv = ModelStore(tmp_path / "models").register("lin", src, "tensorflow")
    model = model_from_dir("lin", "1", Path(mv.uri), {})
    assert type(model).__name__ == "TensorFlowModel"
    model.load()
    assert [(t.name, t.datatype, t.shape) for t in model.inputs] == [("x", "FP32", [-1, 3])]
    x = np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 2.0]], dtype=np.float32)
    np.testing.assert_allclose(model.predict(x)[:, 0], [6.0, 6.0])
    req = InferRequest("lin", [InferInput("x", "FP32", [2, 3], x)])
    np.testing.assert_allclose(np.asarray(model.predict(req))[:, 0], [6.0, 6.0])
    model.unload()
