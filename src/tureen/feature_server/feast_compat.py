"""What keeps a client written for ``feast serve`` behaving the same against tureen.

Always, on the Feast routes:

- **Errors** have Feast's body: a JSON string holding ``{"module", "class", "message"}``
  (what ``FeastError.to_error_detail`` writes), so the Feast SDK raises its typed exception
  (``FeatureViewNotFoundException``, ``FeatureServiceNotFoundException``,
  ``PushSourceNotFoundException``, ...; ``FeastError`` for other refusals) instead of a
  generic ``RuntimeError``. The HTTP status is tureen's (400, 404, ...); the message is
  tureen's, saying what was wrong and what to do.
- **Timestamps** travel as epoch seconds both ways: UnixTimestamp feature values are
  answered as integers (Feast's ``unix_timestamp_val``), and integers are accepted for
  timestamp columns on ``/push`` and ``/write-to-online-store`` (what Feast's remote online
  store sends).
- **Entity keys**: a number sent for a String join key is its decimal text, as Feast
  converts it (``1001`` -> ``"1001"``), not a 400 — on reads and on writes.

With ``serving.feast_compat: true`` (``--feast-compat``), the answers also take Feast's
statuses and values: a stored null is ``PRESENT`` (tureen: ``NULL_VALUE``) and a value
past its view's TTL is returned ``PRESENT`` (tureen: ``OUTSIDE_MAX_AGE`` and no value;
Feast does not enforce TTL on reads, feast#1802). Exact is the default.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from tureen.definitions import FeatureView, source_of
from tureen.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from tureen.registry.snapshot import RegistrySnapshot
from tureen.types import String, UnixTimestamp

#: what tureen could not find -> the Feast exception a Feast client expects
FEAST_NOT_FOUND = {
    "feature view": "FeatureViewNotFoundException",
    "on-demand feature view": "OnDemandFeatureViewNotFoundException",
    "feature service": "FeatureServiceNotFoundException",
    "entity": "EntityNotFoundException",
    "push source": "PushSourceNotFoundException",
    "project": "ProjectNotFoundException",
}


def feast_error_class(cause: BaseException | None) -> str:
    if isinstance(cause, NotFoundError):
        return FEAST_NOT_FOUND.get(cause.kind or "", "FeastObjectNotFoundException")
    if isinstance(cause, PermissionDeniedError):
        return "FeastPermissionError"
    return "FeastError"


def error_body(message: str, cause: BaseException | None) -> bytes:
    """Feast's error body: the JSON text of {module, class, message}, as a JSON string."""
    detail = json.dumps({"module": "feast.errors", "class": feast_error_class(cause),
                         "message": message})
    return orjson.dumps(detail)


def coerce_entities(snapshot: RegistrySnapshot, entities: dict[str, list[Any]]
                    ) -> dict[str, list[Any]]:
    """Numbers sent for String join keys become their decimal text (as Feast converts
    them); everything else is left for the store's own checks."""
    string_keys = _string_keys(snapshot)
    if not string_keys:
        return entities
    out = dict(entities)
    for name in string_keys & out.keys():
        values = out[name]
        if any(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            out[name] = [_text(v) for v in values]
    return out


#: (snapshot, its String join keys): worked out once per registry snapshot, not per request
_string_keys_of: tuple[RegistrySnapshot | None, frozenset[str]] = (None, frozenset())


def _string_keys(snapshot: RegistrySnapshot) -> frozenset[str]:
    global _string_keys_of
    cached, keys = _string_keys_of
    if cached is not snapshot:
        keys = frozenset(f.name for e in snapshot.entities.values() for f in e.key_fields
                         if f.dtype is String)
        _string_keys_of = (snapshot, keys)
    return keys


def _text(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return v
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def epoch_timestamps(views: Iterable[FeatureView], df: dict[str, list[Any]]
                     ) -> dict[str, list[Any]]:
    """Integer (or float) epoch seconds in the timestamp columns of ``views`` become UTC
    datetimes: the event and created timestamp columns and UnixTimestamp features."""
    names: set[str] = set()
    for v in views:
        src = source_of(v)
        names |= {src.timestamp_field, "event_timestamp", src.created_timestamp_column or "created"}
        inverse = {feat: col for col, feat in src.field_mapping.items()}
        names |= {inverse.get(f.name, f.name) for f in v.features if f.dtype is UnixTimestamp}
    out = dict(df)
    for name in names & out.keys():
        values = out[name]
        if any(isinstance(x, int | float) and not isinstance(x, bool) for x in values):
            out[name] = [_from_epoch(x, name) for x in values]
    return out


def _from_epoch(x: Any, column: str) -> Any:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return x
    try:
        return datetime.fromtimestamp(x, UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidRequestError(
            f"column {column!r}: {x} is not a time in seconds since the epoch; send epoch "
            "seconds or an ISO 8601 string (nothing was stored)."
        ) from None


def views_fed_by(snapshot: RegistrySnapshot, push_source: str) -> list[FeatureView]:
    try:
        return snapshot.push_source(push_source)[1]
    except NotFoundError:
        return []  # the push itself reports the unknown source


__all__ = ["FEAST_NOT_FOUND", "coerce_entities", "epoch_timestamps", "error_body",
           "feast_error_class", "views_fed_by"]
