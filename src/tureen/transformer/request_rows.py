"""Find the entity keys (and request-time fields) in a KServe v1, OIP REST or gRPC request.

Whatever the protocol, the result is the same: columns (name -> list of Python values) with
one value per row. ``entity_keys`` maps each join key to where it is in the request: a field
of v1 instances, a named OIP input, or a column of a ``content_type=pd`` request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tureen.codecs.typed import key_values
from tureen.codecs.v1 import instances_of
from tureen.definitions import Field
from tureen.errors import InvalidRequestError
from tureen.serving.inference import InferRequest

Columns = dict[str, list[Any]]


def request_columns(payload: Any) -> tuple[Columns, int]:
    """Every field of the request as columns (used by scripts that see the whole request)."""
    if isinstance(payload, InferRequest):
        cols: Columns = {}
        for i in payload.inputs:
            flat = i.data.reshape(-1) if i.data.ndim != 1 else i.data
            cols[i.name] = [v.decode() if isinstance(v, bytes) else v for v in flat.tolist()]
        n = len(next(iter(cols.values()))) if cols else 0
        return cols, n
    rows = instances_of(payload)
    if rows and all(isinstance(r, dict) for r in rows):
        names: dict[str, None] = {}
        for r in rows:
            names.update(dict.fromkeys(r))
        return {k: [r.get(k) for r in rows] for k in names}, len(rows)
    return {"": list(rows)}, len(rows)


def extract(
    payload: Any, needed: Sequence[Field], where: Mapping[str, str]
) -> tuple[Columns, int]:
    """The ``needed`` fields (join keys, request fields) as columns, from any protocol."""
    if isinstance(payload, InferRequest):
        return _from_infer(payload, needed, where)
    rows = instances_of(payload)
    if not rows:
        raise InvalidRequestError("the request has no instances; send at least one row.")
    first = rows[0]
    if not isinstance(first, dict):
        if len(needed) != 1:
            raise InvalidRequestError(
                "instances are bare values but this model needs "
                f"{[where.get(f.name, f.name) for f in needed]} per row; send objects, e.g. "
                '{"instances": [{' + ", ".join(f'"{where.get(f.name, f.name)}": ...'
                                             for f in needed) + "}]}."
            )
        if any(isinstance(r, list | dict) for r in rows):
            raise InvalidRequestError(
                f"instances must all be bare {needed[0].name} values or all objects."
            )
        return {needed[0].name: list(rows)}, len(rows)
    cols: Columns = {}
    for f in needed:
        src = where.get(f.name, f.name)
        try:
            cols[f.name] = [r[src] for r in rows]
        except KeyError:
            i = next(i for i, r in enumerate(rows) if src not in r)
            raise InvalidRequestError(
                f"instance {i} has no {src!r} ({f.dtype.name}); every instance needs it. "
                f"It has {sorted(rows[i])}."
            ) from None
        except TypeError:
            raise InvalidRequestError(
                "instances must all be objects when the first one is."
            ) from None
    return cols, len(rows)


def from_columns(
    payload: Mapping[str, Any], needed: Sequence[Field], where: Mapping[str, str]
) -> tuple[Columns, int]:
    """Already columnar (what a before_features script returns)."""
    cols: Columns = {}
    n = -1
    for f in needed:
        src = where.get(f.name, f.name)
        values = payload.get(src, payload.get(f.name))
        if values is None:
            raise InvalidRequestError(
                f"the request has no {src!r}; it has {sorted(payload)}."
            )
        values = values.tolist() if hasattr(values, "tolist") else list(values)
        if n >= 0 and len(values) != n:
            raise InvalidRequestError(f"column {src!r} has {len(values)} rows, others {n}.")
        n = len(values)
        cols[f.name] = values
    return cols, max(n, 0)


def _from_infer(
    request: InferRequest, needed: Sequence[Field], where: Mapping[str, str]
) -> tuple[Columns, int]:
    by_name = {i.name: i for i in request.inputs}
    cols: Columns = {}
    n = -1
    for f in needed:
        src = where.get(f.name, f.name)
        inp = by_name.get(src)
        if inp is None:
            if len(needed) == 1 and len(request.inputs) == 1:
                inp = request.inputs[0]
            else:
                raise InvalidRequestError(
                    f"the request has no input {src!r} ({f.dtype.oip}); it has "
                    f"{sorted(by_name)}. Name the input {src!r} or map it with entity_keys."
                )
        values = key_values(inp.data, f.dtype, src)
        if n >= 0 and len(values) != n:
            raise InvalidRequestError(
                f"input {src!r} has {len(values)} values but earlier inputs have {n}; send "
                "one value per row in each."
            )
        n = len(values)
        cols[f.name] = values
    return cols, max(n, 0)
