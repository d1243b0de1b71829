"""Roles → actions, scoping by project and name patterns, and the fail-closed ``require``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.unit.auth.callers import caller

from tureen.auth import access as context
from tureen.auth.policy import (
    BUILTIN_ROLES,
    Action,
    Identity,
    Policy,
    Resource,
    parse_action,
)
from tureen.errors import (
    ConfigError,
    InvalidRequestError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from tureen.serving.context import authorize, permitted


def ident(*roles: str, projects: tuple[str, ...] = (), names: tuple[str, ...] = ()) -> Identity:
    return Identity("t", "token", tuple(roles), projects, names)


def test_builtin_roles_grant_exactly_their_actions() -> None:
    p = Policy()
    expect = {
        "reader": {"read_features"},
        "writer": {"read_features", "write_features"},
        "predictor": {"predict"},
        "deployer": {"deploy", "predict", "model_control"},
        "admin": {a.value for a in Action},
    }
    for role, actions in expect.items():
        for a in Action:
            assert p.allows(ident(role), a, Resource("proj", "m")) == (a.value in actions), \
                (role, a)


def test_custom_roles_from_config_and_bad_ones_named() -> None:
    p = Policy({"analyst": ["read_features", "predict"]})
    assert p.allows(ident("analyst"), Action.PREDICT, Resource("p", "m"))
    assert not p.allows(ident("analyst"), Action.WRITE_FEATURES, Resource("p"))
    with pytest.raises(ConfigError, match=r"unknown action 'predcit'.*'predict'"):
        Policy({"x": ["predcit"]})
    with pytest.raises(ConfigError, match="built-in role"):
        Policy({"admin": ["predict"]})
    with pytest.raises(InvalidRequestError, match=r"unknown role 'reeder'.*'reader'"):
        p.check_role("reeder")
    with pytest.raises(InvalidRequestError, match="Actions:"):
        parse_action("nope")


def test_scope_by_project_and_name_patterns() -> None:
    p = Policy()
    scoped = ident("predictor", projects=("fraud_*",), names=("fraud-*",))
    assert p.allows(scoped, Action.PREDICT, Resource("fraud_detection", "fraud-v2"))
    assert not p.allows(scoped, Action.PREDICT, Resource("fraud_detection", "churn"))
    assert not p.allows(scoped, Action.PREDICT, Resource("marketing", "fraud-v2"))
    # a name-scoped identity cannot act on "every model" (no name)
    assert not p.allows(scoped, Action.PREDICT, Resource("fraud_detection", None))
    # features are scoped by project only
    reader = ident("reader", projects=("fraud_detection",), names=("fraud-*",))
    assert p.allows(reader, Action.READ_FEATURES, Resource("fraud_detection"))
    # an unknown role grants nothing, and says so
    d = p.decide(ident("ghost"), Action.PREDICT, Resource("p", "m"))
    assert not d.allowed and any("ghost" in r for r in d.reasons)


def test_decide_explains_the_deciding_rule() -> None:
    p = Policy()
    d = p.decide(ident("predictor", names=("fraud-*",)), Action.PREDICT, Resource("p", "churn"))
    assert not d.allowed
    assert "name churn is outside the identity's names fraud-*" in d.explain()
    d = p.decide(ident("reader"), Action.DEPLOY, Resource("p", "x"))
    assert "roles that do: admin, deployer" in d.explain()
    assert p.decide(ident("admin"), Action.DEPLOY, Resource("p", "x")).explain().startswith(
        "ALLOW")


names = st.sampled_from(["fraud", "fraud-v2", "churn", "a*", "*", "fraud-*", "p", "q"])


@given(roles=st.lists(st.sampled_from([*BUILTIN_ROLES, "ghost"]), max_size=3),
       projects=st.lists(names, max_size=2), scope=st.lists(names, max_size=2),
       action=st.sampled_from(list(Action)), project=st.none() | names,
       name=st.none() | names)
def test_fast_path_agrees_with_explained_decision(
        roles: list[str], projects: list[str], scope: list[str], action: Action,
        project: str | None, name: str | None) -> None:
    p = Policy()
    i = ident(*roles, projects=tuple(projects), names=tuple(scope))
    r = Resource(project, name)
    assert p.allows(i, action, r) == p.decide(i, action, r).allowed


def test_authorize_allows_local_use_and_checks_served_requests() -> None:
    authorize(Action.ADMIN, "proj")  # CLI / SDK in process: the local user owns the files
    with caller(ident("reader")) as ctx:
        authorize(Action.READ_FEATURES, "proj")
        with pytest.raises(PermissionDeniedError) as exc:
            authorize(Action.PREDICT, "/secret-model")
        assert "secret-model" not in str(exc.value)  # no hint about what exists
        assert not permitted(Action.PREDICT, "/m")
        assert (ctx.action, ctx.resource) == (Action.PREDICT, "/secret-model")
    with caller(None), pytest.raises(UnauthenticatedError):
        authorize(Action.READ_FEATURES, "proj")
    with caller(ident("predictor", projects=("proj",))):
        authorize(Action.PREDICT, "/m")  # no project in the resource: the server's


def test_authorize_fails_closed_once_a_server_enforces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context, "_enforcing", False)
    context.enforce()
    with pytest.raises(UnauthenticatedError):
        authorize(Action.READ_FEATURES, "proj")  # a route that bypassed the guard chain
    assert not permitted(Action.READ_FEATURES, "proj")


def test_resource_parse() -> None:
    assert Resource.parse("proj/model") == Resource("proj", "model")
    assert Resource.parse("proj") == Resource("proj", None)
    assert Resource.parse("/model") == Resource(None, "model")
    assert str(Resource("p", "m")) == "p/m"
