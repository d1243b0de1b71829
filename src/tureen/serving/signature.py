"""A model's declared input signature, applied to requests by name.

Named inputs — OIP tensors, the columns of a ``content_type: pd`` request, the keys of v1
``instances`` objects — are put in the order the model declares, whatever order the client
listed them in; a missing or an unknown name is an ``InvalidRequestError`` (400). A model
declares its order by a signature of several inputs (``Model.inputs``, e.g. from
``model-settings.json``) or by ``Model.feature_names`` (the column names a runtime found in
the fitted estimator).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from tureen.errors import InvalidRequestError
from tureen.serving.inference import InferInput, InferRequest, TensorSpec

if TYPE_CHECKING:
    from tureen.serving.model import Model


def column_order(model: Model) -> list[str]:
    """The names a table request's columns must have, in the model's order ([]: unknown)."""
    if len(model.inputs) > 1:
        return [s.name for s in model.inputs]
    return list(model.feature_names)


def _mismatch(model: str, names: Sequence[str], got: Sequence[str]) -> str:
    want = set(names)
    have = set(got)
    missing = [n for n in names if n not in have]
    extra = [n for n in got if n not in want]
    parts = []
    if missing:
        parts.append(f"is missing {', '.join(repr(n) for n in missing)}")
    if extra:
        parts.append(f"has {', '.join(repr(n) for n in extra)}, which the model does not take")
    return (f"the request for model {model!r} {' and '.join(parts)}; its inputs are "
            f"{list(names)} (any order).")


def check_names(model: str, names: Sequence[str], got: Sequence[str]) -> None:
    """400 unless ``got`` holds exactly ``names`` (in any order, each once)."""
    if len(got) != len(names) or set(got) != set(names):
        if len(set(got)) != len(got):
            dupes = sorted({n for n in got if list(got).count(n) > 1})
            raise InvalidRequestError(
                f"the request for model {model!r} names {dupes} more than once; send each "
                "input once.")
        raise InvalidRequestError(_mismatch(model, names, got))


def conform_frame(model: Model, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame``'s columns in the model's order; 400 for missing, extra or unmappable names."""
    names = column_order(model)
    got = [str(c) for c in frame.columns]
    if not names:
        if len(got) > 1:
            raise InvalidRequestError(
                f"model {model.name!r} declares no column names, so the named columns "
                f"{got} cannot be put in its order; send each row as a list in the model's "
                "feature order (one tensor), or declare the columns in model-settings.json "
                '("inputs": one entry per column, in training order).')
        return frame
    check_names(model.name, names, got)
    if got == names:
        return frame
    return frame[names]


def validate(request: InferRequest, model: Model) -> None:
    """Check an OIP request against a model's input signature and put its inputs in the
    model's order. Table requests (``content_type: pd``) are checked by name only."""
    specs = model.inputs
    inputs = request.inputs
    table = request.is_table
    if len(specs) == 1:
        if len(inputs) == 1 and not table:
            _check(inputs[0].name, inputs[0].datatype, inputs[0].shape, specs[0])
            return
        if not (table or model.feature_names):
            check_names(model.name, [specs[0].name], [i.name for i in inputs])
        if not model.feature_names:
            return  # columns of one tensor without names: conform_frame decides
    names = column_order(model)
    got = [i.name for i in inputs]
    check_names(model.name, names, got)
    if not table and len(specs) > 1:
        for inp, spec in zip(inputs, _by_name(inputs, specs), strict=True):
            _check(inp.name, inp.datatype, inp.shape, spec)
    if got != names:
        by_name = {i.name: i for i in inputs}
        request.inputs = [by_name[n] for n in names]


def _by_name(inputs: Sequence[InferInput], specs: list[TensorSpec]) -> list[TensorSpec]:
    table = {s.name: s for s in specs}
    return [table[i.name] for i in inputs]


def _check(name: str, datatype: str, shape: list[int], spec: TensorSpec) -> None:
    if spec.datatype and datatype != spec.datatype:
        raise InvalidRequestError(
            f"input {name!r} has datatype {datatype} but the model expects {spec.datatype}; "
            f"send {spec.datatype}."
        )
    if spec.shape and (
        len(shape) != len(spec.shape)
        or any(s != -1 and s != d for s, d in zip(spec.shape, shape, strict=True))
    ):
        raise InvalidRequestError(
            f"input {name!r} has shape {shape} but the model expects {spec.shape} "
            "(-1 is any size); reshape the input."
        )
