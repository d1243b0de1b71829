"""Feast feature-server request bodies, parsed into typed values with clear 400s.

The shapes (field names and meaning) follow Feast's HTTP feature server so existing clients
work unchanged. Parsing is hand-written rather than a pydantic model because
``/get-online-features`` is a hot path; the write routes are rare and use the same helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import orjson

from tureen.errors import InvalidRequestError

PushTo = Literal["online", "offline", "online_and_offline"]
_PUSH_TO = ("online", "offline", "online_and_offline")
_WAITS = ("none", "online", "durable")


class OnlineFeaturesRequest(NamedTuple):  # made per request: a tuple is cheapest to make
    features: Sequence[str] | str
    entities: dict[str, list[Any]]
    full_feature_names: bool


@dataclass(frozen=True, slots=True)
class PushRequest:
    push_source_name: str
    df: dict[str, list[Any]]
    to: PushTo
    #: when to answer for a source feeding stream views (none|online|durable); None: by ``to``
    wait: str | None = None


@dataclass(frozen=True, slots=True)
class WriteRequest:
    feature_view_name: str
    df: dict[str, list[Any]]


@dataclass(frozen=True, slots=True)
class MaterializeRequest:
    start: datetime | None
    end: datetime
    feature_views: list[str] | None


def load_object(body: bytes, route: str) -> dict[str, Any]:
    try:
        obj = orjson.loads(body) if body else None
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"{route}: the body is not valid JSON ({exc}).") from None
    if not isinstance(obj, dict):
        raise InvalidRequestError(f"{route}: the body must be a JSON object.")
    return obj


def _columns(obj: dict[str, Any], key: str, route: str, example: str) -> dict[str, list[Any]]:
    cols = obj.get(key)
    if not isinstance(cols, dict) or not cols:
        raise InvalidRequestError(
            f'{route}: "{key}" must be an object of columns (name -> list of values), '
            f"e.g. {example}."
        )
    n = -1
    for name, values in cols.items():
        if not isinstance(values, list):
            raise InvalidRequestError(
                f'{route}: "{key}.{name}" must be a list of values, got '
                f"{type(values).__name__}: wrap single values in a list."
            )
        if n >= 0 and len(values) != n:
            raise InvalidRequestError(
                f'{route}: the columns of "{key}" have different lengths ({name!r} has '
                f"{len(values)}, earlier columns {n}); send one value per row in each."
            )
        n = len(values)
    return cols


def parse_online_request(body: bytes) -> OnlineFeaturesRequest:
    route = "/get-online-features"
    try:
        obj = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        obj = load_object(body, route)  # raises the 400
    if type(obj) is not dict:
        raise InvalidRequestError(f"{route}: the body must be a JSON object.")
    features = obj.get("features")
    service = obj.get("feature_service")
    chosen: Sequence[str] | str
    if service is None and type(features) is list and features:
        for f in features:  # orjson makes exact strs
            if type(f) is not str:
                raise InvalidRequestError(_FEATURES_LIST)
        chosen = features
    elif features is not None and service is not None:
        raise InvalidRequestError(f'{route}: send "features" or "feature_service", not both.')
    elif service is not None:
        if not isinstance(service, str) or not service:
            raise InvalidRequestError(f'{route}: "feature_service" must be a service name.')
        chosen = service
    elif features is not None:
        raise InvalidRequestError(_FEATURES_LIST)
    else:
        raise InvalidRequestError(
            f'{route}: name what to read: "features": ["view:feature", ...] or '
            '"feature_service": "name".'
        )
    entities = _columns(obj, "entities", route, '{"driver_id": [1001, 1002]}')
    full = obj.get("full_feature_names", False)
    if full is not False and full is not True:
        raise InvalidRequestError(f'{route}: "full_feature_names" must be true or false.')
    return OnlineFeaturesRequest(chosen, entities, full)


_FEATURES_LIST = (
    '/get-online-features: "features" must be a non-empty list of "view:feature" strings.'
)


def _name(obj: dict[str, Any], key: str, route: str) -> str:
    v = obj.get(key)
    if not isinstance(v, str) or not v:
        raise InvalidRequestError(f'{route}: "{key}" is required and must be a name.')
    return v


def parse_push(body: bytes) -> PushRequest:
    route = "/push"
    obj = load_object(body, route)
    to = obj.get("to", "online")
    if to not in _PUSH_TO:
        raise InvalidRequestError(f'{route}: "to" must be one of {", ".join(_PUSH_TO)}.')
    df = _columns(obj, "df", route, '{"account_id": [1001], "event_timestamp": [...]}')
    wait = obj.get("wait")
    if wait is not None and wait not in _WAITS:
        raise InvalidRequestError(f'{route}: "wait" must be one of {", ".join(_WAITS)}.')
    return PushRequest(_name(obj, "push_source_name", route), df, to, wait)


def parse_write(body: bytes) -> WriteRequest:
    route = "/write-to-online-store"
    obj = load_object(body, route)
    df = _columns(obj, "df", route, '{"account_id": [1001], "event_timestamp": [...]}')
    return WriteRequest(_name(obj, "feature_view_name", route), df)


def _timestamp(value: Any, key: str, route: str) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    raise InvalidRequestError(
        f'{route}: "{key}" must be an ISO 8601 timestamp (e.g. "2024-05-01T00:00:00Z") or '
        "seconds since the epoch."
    )


def _views(obj: dict[str, Any], route: str) -> list[str] | None:
    views = obj.get("feature_views")
    if views is None or views == []:
        return None
    if not isinstance(views, list) or not all(isinstance(v, str) for v in views):
        raise InvalidRequestError(f'{route}: "feature_views" must be a list of view names.')
    return views


def parse_materialize(body: bytes, incremental: bool) -> MaterializeRequest:
    route = "/materialize-incremental" if incremental else "/materialize"
    obj = load_object(body, route)
    end = _timestamp(obj.get("end_ts"), "end_ts", route)
    start = None if incremental else _timestamp(obj.get("start_ts"), "start_ts", route)
    return MaterializeRequest(start, end, _views(obj, route))


def write_answer(rows: int) -> dict[str, Any]:
    """The body of a successful /push or /write-to-online-store: rows accepted, and per view
    the rows ignored online because a newer value is stored (newer wins)."""
    ignored = dict(getattr(rows, "ignored_older", None) or {})
    out: dict[str, Any] = {"status": "ok", "rows": int(rows), "ignored_older": ignored}
    if ignored:
        total = sum(ignored.values())
        out["note"] = (
            f"{total} row(s) were older than the stored value of their entity and "
            "were not written online (newer event time wins)."
        )
    return out
