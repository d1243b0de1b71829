"""The CEL subset of compiled KFP conditions and loop-item selectors: exact, and never eval."""

from __future__ import annotations

import pytest

from tureen.pipelines.cel import CelError, condition, evaluate, select

PV = "inputs.parameter_values"


@pytest.mark.parametrize(("expr", "values", "expected"), [
    # what kfp's compiler writes, each with both outcomes (kubeflow/pipelines#13313)
    (f"{PV}['c'] == 'heads'", {"c": "heads"}, True),
    (f"{PV}['c'] == 'heads'", {"c": "tails"}, False),
    (f"!({PV}['c'] == 'heads') && {PV}['c'] == 'tails'", {"c": "tails"}, True),
    (f"!({PV}['c'] == 'heads') && {PV}['c'] == 'tails'", {"c": "heads"}, False),
    (f"!({PV}['c'] == 'heads') && !({PV}['c'] == 'tails')", {"c": "edge"}, True),
    (f"!({PV}['c'] == 'heads') && !({PV}['c'] == 'tails')", {"c": "heads"}, False),
    (f"int({PV}['k']) > 3", {"k": 4}, True),
    (f"int({PV}['k']) > 3", {"k": 3}, False),
    (f"int({PV}['k']) > 3", {"k": 4.0}, True),  # a NUMBER_INTEGER stored as a double
    (f"double({PV}['a']) >= 0.9", {"a": 0.9}, True),
    (f"double({PV}['a']) >= 0.9", {"a": 0.89}, False),
    (f"double(int({PV}['n'])) < {PV}['x']", {"n": 2, "x": 2.5}, True),
    (f"{PV}['b'] == true", {"b": True}, True),
    (f"{PV}['b'] == true", {"b": False}, False),
    (f"!({PV}['b'] == true)", {"b": False}, True),
    (f"{PV}['s'] != 'x' || {PV}['s'] == 'x'", {"s": "x"}, True),
    (f"{PV}['s'] <= 'b'", {"s": "a"}, True),
    (f"int({PV}['k']) == -2", {"k": -2}, True),
    (f"{PV}['s'] == 'it\\'s'", {"s": "it's"}, True),
    (f"{PV}['s'] in ['a', 'b']", {"s": "b"}, True),
    (f"{PV}['n'] == 1", {"n": "1"}, False),  # different types are never equal
])
def test_conditions(expr: str, values: dict[str, object], expected: bool) -> None:
    assert condition(expr, values) is expected


def test_short_circuit_skips_errors_on_the_decided_side() -> None:
    assert condition(f"{PV}['a'] == 1 || int({PV}['bad']) > 0", {"a": 1, "bad": "x"}) is True
    assert condition(f"{PV}['a'] == 2 && int({PV}['bad']) > 0", {"a": 1, "bad": "x"}) is False
    with pytest.raises(CelError, match="not an integer"):
        condition(f"{PV}['a'] == 1 && int({PV}['bad']) > 0", {"a": 1, "bad": "x"})


def test_int_truncates_toward_zero_like_cel() -> None:
    assert evaluate("int(-2.7)", {}) == -2
    assert evaluate("int('42')", {}) == 42


@pytest.mark.parametrize(("expr", "message"), [
    (f"{PV}['missing'] == 1", "no key 'missing'"),
    (f"{PV}['s'] > 1", "cannot compare string > int"),
    (f"{PV}['s']", "is string"),
    ("__import__('os').system('true')", "unknown function"),
    (f"{PV}['s'] == 'x' and 1", "unexpected 'and'"),
    ("open", "unknown name"),
    (f"{PV}['s'] == 'x", "unexpected character"),
    ("(" * 100 + "true" + ")" * 100, "nested deeper"),
    ("'a' == 'b' == ", "unexpected"),
    (f"!{PV}['s']", "'!' needs a bool"),
    (f"{PV}['s'] == 'x' && 1", "need bools"),
    ("1" * 10_001, "longer than"),
])
def test_bad_expressions_are_clear_errors(expr: str, message: str) -> None:
    with pytest.raises(CelError, match=message):
        condition(expr, {"s": "x"})


def test_loop_item_selectors() -> None:
    assert select('parseJson(string_value)["a"]', {"a": 1, "b": "x"}) == 1
    assert select('parseJson(string_value)["b"]', '{"a": 1, "b": "x"}') == "x"
    assert select('parseJson(string_value)["a"]["c"][1]', {"a": {"c": [5, 6]}}) == 6
    with pytest.raises(CelError, match="no key 'z'"):
        select('parseJson(string_value)["z"]', {"a": 1})
