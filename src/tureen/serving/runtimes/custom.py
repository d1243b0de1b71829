"""A ``model.py`` holding one ``Model`` subclass (constructed with the model's name)."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path

from tureen.errors import InvalidRequestError
from tureen.serving.model import Model

_seq = itertools.count()


def load_custom(name: str, file: Path, model_dir: Path) -> Model:
    mod_name = f"tureen_user_model_{next(_seq)}"
    spec = importlib.util.spec_from_file_location(mod_name, file)
    if spec is None or spec.loader is None:
        raise InvalidRequestError(f"{file} cannot be imported as a Python module.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)
    classes = [
        obj for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, Model) and obj.__module__ == mod_name
    ]
    if len(classes) != 1:
        raise InvalidRequestError(
            f"{file} must define exactly one subclass of tureen.serving.Model; found "
            f"{[c.__name__ for c in classes]}."
        )
    model = classes[0](name)
    model.model_dir = model_dir  # type: ignore[attr-defined]
    return model
