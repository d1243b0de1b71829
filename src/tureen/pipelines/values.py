"""Parameter values typed the way the pipeline declares them.

A compiled spec stores numbers as JSON (a ``NUMBER_INTEGER`` default ``3`` is written ``3.0``),
a CLI passes text, and a container writes its outputs to files. Everything a task receives
goes through ``coerce`` with the receiving input's ``parameterType``, so an ``int`` input gets
an ``int`` (kfp.local hands it a float) and a mismatch is an error naming the input.
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml

from tureen.errors import InvalidRequestError


def _integral(v: float) -> bool:
    return math.isfinite(v) and v == int(v)


def coerce(value: Any, ptype: str, where: str) -> Any:
    """``value`` as ``ptype``; ``where`` names the input for the error message."""
    def bad(expected: str) -> InvalidRequestError:
        shown = repr(value) if len(repr(value)) < 120 else repr(value)[:117] + "..."
        return InvalidRequestError(
            f"{where} expects {expected} ({ptype}), got {type(value).__name__} {shown}."
        )

    if ptype == "NUMBER_INTEGER":
        if isinstance(value, bool):
            raise bad("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and _integral(value):
            return int(value)
        if isinstance(value, str):
            text = value.strip()
            try:
                return int(text)
            except ValueError:
                pass
            try:
                f = float(text)
            except ValueError:
                raise bad("an integer") from None
            if _integral(f):
                return int(f)
        raise bad("an integer")
    if ptype == "NUMBER_DOUBLE":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise bad("a number") from None
        raise bad("a number")
    if ptype == "BOOLEAN":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise bad("true or false")
    if ptype == "STRING":
        return to_text(value)
    if ptype in ("LIST", "STRUCT"):
        want = list if ptype == "LIST" else dict
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise bad("JSON " + ("a list" if want is list else "an object")) from None
        if not isinstance(value, want):
            raise bad("a list" if want is list else "a mapping")
        return value
    return value  # TASK_FINAL_STATUS, TASK_CONFIG: structs the runner builds itself


def from_text(text: str, ptype: str, where: str) -> Any:
    """A value given as text (``--param k=v``, a container's output file)."""
    if ptype == "STRING":
        return text
    if ptype in ("LIST", "STRUCT"):
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError:
            raise InvalidRequestError(
                f"{where} expects {'a list' if ptype == 'LIST' else 'a mapping'} ({ptype}) "
                f"written as JSON or YAML, got {text[:80]!r}."
            ) from None
        return coerce(parsed, ptype, where)
    return coerce(text, ptype, where)


def to_text(value: Any) -> str:
    """A value spliced into a container's command line, as Kubeflow formats it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value)
