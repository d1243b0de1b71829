"""Message bytes -> one event row (a dict), or the reason it cannot be read."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import orjson

from tureen.definitions import AvroFormat, KafkaSource
from tureen.errors import ConfigError

Decoder = Callable[[bytes | None], dict[str, Any]]
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class BadMessageError(ValueError):
    """The message is not a row: the reason goes to the dead letter."""


def _json(value: bytes) -> dict[str, Any]:
    try:
        row = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BadMessageError(f"not valid JSON: {exc}") from None
    if not isinstance(row, dict):
        raise BadMessageError(
            f"a message must be a JSON object (one row), got {type(row).__name__}")
    return row


def _avro(schema_json: str, framed: bool) -> Callable[[bytes], dict[str, Any]]:
    try:
        import fastavro
    except ImportError as exc:
        raise ConfigError(
            "Avro messages need fastavro: pip install 'tureen[kafka]'."
        ) from exc
    try:
        schema = fastavro.parse_schema(json.loads(schema_json))
    except Exception as exc:
        raise ConfigError(f"the Avro schema of a KafkaSource is not valid: {exc}") from exc

    def decode(value: bytes) -> dict[str, Any]:
        if framed:
            if len(value) < 5 or value[0] != 0:
                raise BadMessageError("not in Confluent's Avro wire format (magic byte 0 and "
                                      "a 4-byte schema id first)")
            value = value[5:]
        body = value
        try:
            row = fastavro.schemaless_reader(io.BytesIO(body), schema, None)
        except Exception as exc:
            raise BadMessageError(f"not an Avro record of the source's schema: {exc}") from None
        if not isinstance(row, dict):
            raise BadMessageError("the Avro schema must describe a record")
        return row

    return decode


def decoder_for(source: KafkaSource) -> Decoder:
    fmt = source.message_format
    inner = _avro(fmt.schema_json, fmt.confluent_framing) if isinstance(fmt, AvroFormat) \
        else _json

    def decode(value: bytes | None) -> dict[str, Any]:
        if value is None:
            raise BadMessageError("the message has no value (a tombstone)")
        if len(value) > MAX_MESSAGE_BYTES:
            raise BadMessageError(f"the message is {len(value)} bytes; the limit is "
                             f"{MAX_MESSAGE_BYTES}")
        return inner(value)

    return decode
