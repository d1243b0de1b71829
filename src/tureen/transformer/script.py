"""User transformer scripts (the Hopsworks shape): a Python file with one class that has
``preprocess(inputs)`` and/or ``postprocess(outputs)``, constructed without arguments.

Before the feature step ``preprocess`` receives the request as columns (name -> list) and
returns columns (it may compute entity keys or request-time fields). After the feature step
it receives the features as a pandas DataFrame (columns in model order) and returns a
DataFrame or array for the model. ``postprocess`` receives the predictions (a numpy array, or
a dict of arrays for models with several outputs) and returns what the client gets.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import sys
from pathlib import Path
from typing import Any

from tureen.errors import ConfigError

_seq = itertools.count()


class UserScript:
    def __init__(self, path: str | Path, position: str) -> None:
        self.path = Path(path)
        self.position = position
        self.instance = _load(self.path)
        self.pre = getattr(self.instance, "preprocess", None)
        self.post = getattr(self.instance, "postprocess", None)
        self.is_async = any(inspect.iscoroutinefunction(f) for f in (self.pre, self.post) if f)

    async def run_pre(self, data: Any) -> Any:
        if self.pre is None:
            return data
        out = self.pre(data)
        return await out if inspect.isawaitable(out) else out

    async def run_post(self, data: Any) -> Any:
        if self.post is None:
            return data
        out = self.post(data)
        return await out if inspect.isawaitable(out) else out


def _load(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"transformer script {path} does not exist.")
    mod_name = f"tureen_user_transformer_{next(_seq)}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path} cannot be imported as a Python module.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(f"importing transformer script {path} failed: {exc!r}") from exc
    classes = [
        obj for obj in vars(module).values()
        if isinstance(obj, type) and obj.__module__ == mod_name
        and (callable(getattr(obj, "preprocess", None))
             or callable(getattr(obj, "postprocess", None)))
    ]
    if len(classes) != 1:
        raise ConfigError(
            f"{path} must define exactly one class with preprocess(inputs) and/or "
            f"postprocess(outputs); found {[c.__name__ for c in classes]}."
        )
    try:
        return classes[0]()
    except Exception as exc:
        raise ConfigError(f"{classes[0].__name__}() in {path} failed: {exc!r}") from exc
