"""Importing a user's Python file (feature definitions, a ``model.py``, a transformer script)
as a fresh module with a unique name, so two files of the same name never collide.

``import_file`` raises ``NotImportableError`` when the file cannot be a module at all;
whatever the file itself raises while it runs propagates unchanged, for the caller to report
with its own context (which file, which line, what it was loading).
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType

_seq = itertools.count()


class NotImportableError(ImportError):
    """The path is not something Python can import (no loader for it)."""


def import_file(path: Path, prefix: str, keep: bool = True) -> ModuleType:
    """Run ``path`` as module ``<prefix><n>``. ``keep``: leave it in ``sys.modules``
    (needed when its classes are pickled or looked up by module name later)."""
    name = f"{prefix}{next(_seq)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise NotImportableError(f"{path} cannot be imported as a Python module.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    if not keep:
        sys.modules.pop(name, None)
    return module
