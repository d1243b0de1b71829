"""A ``model.py`` holding one ``Model`` subclass (constructed with the model's name)."""

from __future__ import annotations

from pathlib import Path

from tureen.errors import InvalidRequestError
from tureen.serving.model import Model
from tureen.user_code import NotImportableError, import_file


def load_custom(name: str, file: Path, model_dir: Path) -> Model:
    try:
        module = import_file(file, "tureen_user_model_")
    except NotImportableError as exc:
        raise InvalidRequestError(str(exc)) from exc
    mod_name = module.__name__
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
