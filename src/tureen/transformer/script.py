"""User transformer scripts (the Hopsworks shape): a Python file with one class that has
``preprocess(inputs)`` and/or ``postprocess(outputs)``, constructed without arguments.

Before the feature step ``preprocess`` receives the request as columns (name -> list) and
returns columns (it may compute entity keys or request-time fields). After the feature step
it receives the features as a pandas DataFrame (columns in model order) and returns a
DataFrame or array for the model. ``postprocess`` receives the predictions (a numpy array, or
a dict of arrays for models with several outputs) and returns what the client gets.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from tureen.errors import ConfigError
from tureen.user_code import NotImportableError, import_file


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
    try:
        module = import_file(path, "tureen_user_transformer_")
    except NotImportableError as exc:
        raise ConfigError(str(exc)) from exc
    except Exception as exc:
        raise ConfigError(f"importing transformer script {path} failed: {exc!r}") from exc
    mod_name = module.__name__
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
