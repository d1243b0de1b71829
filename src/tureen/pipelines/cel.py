"""The part of CEL (Common Expression Language) that KFP writes into a compiled pipeline.

Conditions (``triggerPolicy.condition``) look like::

    int(inputs.parameter_values['pipelinechannel--k']) > 3
    !(inputs.parameter_values['pipelinechannel--flip-Output'] == 'heads') && ...

and loop-item selectors (``parameterExpressionSelector``) like
``parseJson(string_value)["a"]``. This module parses them with a recursive-descent parser
(no ``eval``), bounded in length and depth, and evaluates them with CEL's rules where they
matter: ``==`` between different types is false (numbers compare across int/double), ordering
different types is an error, ``int()`` truncates toward zero, ``&&`` / ``||`` short-circuit.

Grammar (lowest precedence first)::

    or      := and ('||' and)*
    and     := rel ('&&' rel)*
    rel     := unary (('=='|'!='|'<'|'<='|'>'|'>='|'in') unary)?
    unary   := ('!'|'-') unary | postfix
    postfix := primary ('[' or ']' | '.' IDENT)*
    primary := literal | IDENT '(' [or (',' or)*] ')' | IDENT | '(' or ')' | '[' list ']'
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from tureen.errors import InvalidRequestError

MAX_LENGTH = 10_000
MAX_DEPTH = 64

_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>\d+\.\d*(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+u?)
  | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<op>&&|\|\||==|!=|<=|>=|[<>!()\[\].,\-])
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
""", re.VERBOSE)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}


class CelError(InvalidRequestError):
    """The expression is not valid, or cannot be evaluated on these values."""


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise CelError(f"unexpected character {text[pos]!r} at position {pos}")
        pos = m.end()
        kind = m.lastgroup or ""
        tok = m.group()
        if kind == "ws":
            continue
        if kind == "num":
            value: Any = float(tok) if any(c in tok for c in ".eE") else int(tok.rstrip("u"))
            out.append(("lit", value))
        elif kind == "str":
            out.append(("lit", _unescape(tok[1:-1])))
        elif kind == "id" and tok in ("true", "false", "null"):
            out.append(("lit", {"true": True, "false": False, "null": None}[tok]))
        else:
            out.append((kind, tok))
    out.append(("end", None))
    return out


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "double"
    return {str: "string", list: "list", dict: "map", type(None): "null"}.get(
        type(v), type(v).__name__)


def _numeric(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _equal(a: Any, b: Any) -> bool:
    if _numeric(a) and _numeric(b):
        return bool(a == b)
    if _type_name(a) != _type_name(b):
        return False
    return bool(a == b)


def _order(op: str, a: Any, b: Any) -> bool:
    ok = (_numeric(a) and _numeric(b)) or (_type_name(a) == _type_name(b)
                                            and _type_name(a) in ("string", "bool"))
    if not ok:
        raise CelError(f"cannot compare {_type_name(a)} {op} {_type_name(b)}")
    return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])


def _to_int(v: Any) -> int:
    if isinstance(v, bool):
        raise CelError("int() of a bool is not defined")
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise CelError("int() of a non-finite double")
        return int(v)  # truncates toward zero, like CEL
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            raise CelError(f"int({v!r}): not an integer") from None
    raise CelError(f"int() of {_type_name(v)}")


def _to_double(v: Any) -> float:
    if _numeric(v):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            raise CelError(f"double({v!r}): not a number") from None
    raise CelError(f"double() of {_type_name(v)}")


def _to_string(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if _numeric(v):
        return str(v)
    return json.dumps(v)


def _parse_json(v: Any) -> Any:
    if not isinstance(v, str):
        return v
    try:
        return json.loads(v)
    except ValueError:
        raise CelError(f"parseJson: {v[:80]!r} is not JSON") from None


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise CelError(f"bool() of {_type_name(v)} {v!r}")


FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "int": _to_int, "double": _to_double, "string": _to_string, "bool": _to_bool,
    "parseJson": _parse_json, "size": len,
}


class _Parser:
    def __init__(self, text: str, env: Mapping[str, Any]) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.env = env
        self.depth = 0

    def peek(self) -> tuple[str, Any]:
        return self.toks[self.i]

    def take(self, value: str | None = None) -> tuple[str, Any]:
        tok = self.toks[self.i]
        if value is not None and tok[1] != value:
            got = "the end" if tok[0] == "end" else repr(tok[1])
            raise CelError(f"expected {value!r}, found {got}")
        self.i += 1
        return tok

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CelError(f"expression nested deeper than {MAX_DEPTH} levels")

    # Each level returns a thunk-free value; short-circuiting parses but skips evaluation
    # through `live` (False inside the right side of a decided && / ||).
    def or_(self, live: bool) -> Any:
        left = self.and_(live)
        while self.peek() == ("op", "||"):
            self.take()
            decided = live and _truth(left)
            right = self.and_(live and not decided)
            if live and not decided:
                left = _truth(right)
            elif live:
                left = True
        return left

    def and_(self, live: bool) -> Any:
        left = self.rel(live)
        while self.peek() == ("op", "&&"):
            self.take()
            decided = live and not _truth(left)
            right = self.rel(live and not decided)
            if live and not decided:
                left = _truth(right)
            elif live:
                left = False
        return left

    def rel(self, live: bool) -> Any:
        left = self.unary(live)
        kind, tok = self.peek()
        if (kind == "op" and tok in ("==", "!=", "<", "<=", ">", ">=")) or \
                (kind == "id" and tok == "in"):
            self.take()
            right = self.unary(live)
            if not live:
                return None
            if tok == "==":
                return _equal(left, right)
            if tok == "!=":
                return not _equal(left, right)
            if tok == "in":
                if not isinstance(right, list | dict | str):
                    raise CelError(f"'in' needs a list or map on the right, not "
                                   f"{_type_name(right)}")
                return any(_equal(left, x) for x in right) if isinstance(right, list) \
                    else left in right
            return _order(tok, left, right)
        return left

    def unary(self, live: bool) -> Any:
        kind, tok = self.peek()
        if kind == "op" and tok in ("!", "-"):
            self.take()
            self.nest()
            v = self.unary(live)
            self.depth -= 1
            if not live:
                return None
            if tok == "!":
                if not isinstance(v, bool):
                    raise CelError(f"'!' needs a bool, not {_type_name(v)}")
                return not v
            if not _numeric(v):
                raise CelError(f"'-' needs a number, not {_type_name(v)}")
            return -v
        return self.postfix(live)

    def postfix(self, live: bool) -> Any:
        v = self.primary(live)
        while True:
            kind, tok = self.peek()
            if (kind, tok) == ("op", "["):
                self.take()
                self.nest()
                key = self.or_(live)
                self.depth -= 1
                self.take("]")
                v = _index(v, key) if live else None
            elif (kind, tok) == ("op", "."):
                self.take()
                k2, name = self.take()
                if k2 != "id":
                    raise CelError(f"expected a field name after '.', found {name!r}")
                v = _index(v, name) if live else None
            else:
                return v

    def primary(self, live: bool) -> Any:
        kind, tok = self.take()
        if kind == "lit":
            return tok
        if (kind, tok) == ("op", "("):
            self.nest()
            v = self.or_(live)
            self.depth -= 1
            self.take(")")
            return v
        if (kind, tok) == ("op", "["):
            items = []
            if self.peek() != ("op", "]"):
                items.append(self.or_(live))
                while self.peek() == ("op", ","):
                    self.take()
                    items.append(self.or_(live))
            self.take("]")
            return items
        if kind == "id":
            if self.peek() == ("op", "("):
                if tok not in FUNCTIONS:
                    raise CelError(f"unknown function {tok}(); supported: {sorted(FUNCTIONS)}")
                self.take()
                self.nest()
                arg = self.or_(live)
                self.depth -= 1
                self.take(")")
                return FUNCTIONS[tok](arg) if live else None
            if tok not in self.env:
                raise CelError(f"unknown name {tok!r}")
            return self.env[tok]
        got = "the end" if kind == "end" else repr(tok)
        raise CelError(f"unexpected {got}")


def _truth(v: Any) -> bool:
    if not isinstance(v, bool):
        raise CelError(f"'&&' and '||' need bools, not {_type_name(v)} {v!r}")
    return v


def _index(v: Any, key: Any) -> Any:
    if isinstance(v, Mapping):
        if key not in v:
            raise CelError(f"no key {key!r} (keys: {sorted(map(str, v))[:20]})")
        return v[key]
    if isinstance(v, list) and isinstance(key, int) and not isinstance(key, bool):
        if not -len(v) <= key < len(v):
            raise CelError(f"index {key} out of range for a list of {len(v)}")
        return v[key]
    raise CelError(f"cannot index {_type_name(v)} with {_type_name(key)}")


def evaluate(expression: str, env: Mapping[str, Any]) -> Any:
    """Evaluate ``expression`` with the names in ``env`` (e.g. ``inputs``, ``string_value``)."""
    if len(expression) > MAX_LENGTH:
        raise CelError(f"expression longer than {MAX_LENGTH} characters")
    p = _Parser(expression, env)
    value = p.or_(True)
    if p.peek()[0] != "end":
        raise CelError(f"unexpected {p.peek()[1]!r} after a complete expression")
    return value


def condition(expression: str, parameter_values: Mapping[str, Any]) -> bool:
    """A task's ``triggerPolicy.condition`` on the values of its inputs."""
    try:
        v = evaluate(expression, {"inputs": {"parameter_values": dict(parameter_values)}})
    except CelError as exc:
        raise CelError(f"condition {expression!r}: {exc}") from None
    if not isinstance(v, bool):
        raise CelError(f"condition {expression!r} is {_type_name(v)} {v!r}, not a bool")
    return v


def select(expression: str, value: Any) -> Any:
    """A ``parameterExpressionSelector`` (``parseJson(string_value)["a"]``) on ``value``."""
    text = value if isinstance(value, str) else json.dumps(value)
    try:
        return evaluate(expression, {"string_value": text})
    except CelError as exc:
        raise CelError(f"selector {expression!r}: {exc}") from None
