"""HTTP field (header) syntax, RFC 9110 §5: what may be read from or written to the wire.

    field-name  = token             tchar = ! # $ % & ' * + - . ^ _ ` | ~ DIGIT ALPHA
    field-value = field-vchar [ *( SP / HTAB / field-vchar ) field-vchar ]
    field-vchar = VCHAR / obs-text  (0x21-0x7E, 0x80-0xFF)

So a value has no CR, LF, NUL or other control characters and no leading or trailing
whitespace. Both HTTP/2 servers check every inbound field with these; the outbound client
(``http_pool``) refuses to write a field that fails them, so nothing unvalidated is
forwarded.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_LOWER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")
_VALUE = re.compile(r"(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?")


def valid_name(name: str, lowercase: bool = False) -> bool:
    """A token; with ``lowercase`` (HTTP/2, RFC 9113 §8.2.1) no uppercase letters."""
    return (_LOWER_NAME if lowercase else _NAME).fullmatch(name) is not None


def valid_value(value: str) -> bool:
    return _VALUE.fullmatch(value) is not None


def check_field(name: str, value: str) -> None:
    """Raise ``ValueError`` naming the problem when ``name: value`` is not a valid field."""
    if not valid_name(name):
        raise ValueError(f"header name {name[:64]!r} is not an HTTP token (RFC 9110 §5.1)")
    if not valid_value(value):
        raise ValueError(f"header {name!r} has a value with control characters or "
                         "surrounding whitespace (RFC 9110 §5.5)")
