"""Entity rows as columns: the join keys and request-time fields a plan needs, taken from a
list of dicts, a dict of lists or a DataFrame, checked for presence, equal lengths and (for
request fields) their declared dtypes, with errors that say which row and name is wrong."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from tureen.definitions import Field
from tureen.errors import InvalidRequestError, suggest

EntityRows = Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]] | pd.DataFrame


def _lists(
    entity_rows: dict[str, Any], needed: Sequence[Field]
) -> tuple[dict[str, Sequence[Any]], int] | None:
    """``columns_of`` of a dict of equally long lists; None for anything else (the general
    path takes it and says what is wrong)."""
    cols: dict[str, Sequence[Any]] = {}
    n = -1
    for f in needed:
        values = entity_rows.get(f.name)
        if type(values) is not list or (n >= 0 and len(values) != n):
            return None
        n = len(values)
        cols[f.name] = values
    return (cols, n) if n >= 0 else None


def columns_of(
    entity_rows: EntityRows, needed: Sequence[Field]
) -> tuple[dict[str, Sequence[Any]], int]:
    """Entity rows as {name: values} for the ``needed`` names, checking presence."""
    if type(entity_rows) is dict:  # the common case (parsed JSON): no ABC checks
        lists = _lists(entity_rows, needed)
        if lists is not None:
            return lists
    if isinstance(entity_rows, pd.DataFrame):
        entity_rows = {str(c): entity_rows[c].tolist() for c in entity_rows.columns}
    if isinstance(entity_rows, Mapping):
        cols: dict[str, Sequence[Any]] = {}
        n = -1
        for f in needed:
            values = entity_rows.get(f.name)
            if values is None:
                raise _missing(f, sorted(entity_rows), needed)
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
                if hasattr(values, "tolist"):
                    values = values.tolist()
                else:
                    raise InvalidRequestError(
                        f"entity column {f.name!r} must be a list of values (dict of lists), "
                        f"got {type(values).__name__}."
                    )
            if n >= 0 and len(values) != n:
                raise InvalidRequestError(
                    f"entity columns have different lengths: {f.name!r} has {len(values)} "
                    f"values, earlier columns {n}."
                )
            n = len(values)
            cols[f.name] = values
        if n < 0:
            lengths = {len(v) for v in entity_rows.values() if isinstance(v, Sequence)}
            n = lengths.pop() if len(lengths) == 1 else 0
        return cols, n
    rows = entity_rows
    cols = {}
    for f in needed:
        name = f.name
        try:
            cols[name] = [r[name] for r in rows]
        except KeyError:
            bad = next(r for r in rows if name not in r)
            raise _missing(f, sorted(bad), needed, row=list(rows).index(bad)) from None
        except TypeError:
            raise InvalidRequestError(
                "entity_rows must be a list of dicts or a dict of lists."
            ) from None
    return cols, len(rows)


def _missing(
    f: Field, given: list[str], needed: Sequence[Field], row: int | None = None
) -> InvalidRequestError:
    """A missing join key or request field; a misspelling is suggested among the names given
    that nothing needs (a name that is itself needed is no typo)."""
    where = f" in entity row {row}" if row is not None else ""
    spare = set(given) - {n.name for n in needed}
    return InvalidRequestError(
        f"missing {f.name!r} ({f.dtype.name}){where}: the requested features need it."
        f"{suggest(f.name, sorted(spare))} Given: {given or 'nothing'}."
    )


_NUMBER = (int, float, np.integer, np.floating)
_ACCEPTS: dict[str, tuple[type, ...]] = {
    "Int32": (int, np.integer),
    "Int64": (int, np.integer),
    "Float32": _NUMBER,
    "Float64": _NUMBER,
    "Bool": (bool, np.bool_),
    "String": (str,),
    "Bytes": (bytes,),
    "UnixTimestamp": (datetime, str, np.datetime64),
}


def check_request_field(f: Field, values: Sequence[Any]) -> None:
    """Request-time values must fit their declared dtype (None is a null)."""
    if f.dtype.element is not None:
        ok: tuple[type, ...] = (list, tuple, np.ndarray)
    else:
        ok = _ACCEPTS[f.dtype.name]
    strict_bool = f.dtype.name != "Bool"
    for i, v in enumerate(values):
        if v is None:
            continue
        if not isinstance(v, ok) or (strict_bool and isinstance(v, (bool, np.bool_))):
            raise InvalidRequestError(
                f"request field {f.name!r} expects {f.dtype.name} values, got "
                f"{type(v).__name__} {v!r} in entity row {i}."
            )
