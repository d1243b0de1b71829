"""Who may do what: actions, roles, identities, resources and the one decision function.

An ``Identity`` (from a token, an OIDC JWT, a client certificate or a configured service token)
holds role names and an optional scope: project patterns and deployment/model name patterns.
``Policy.decide(identity, action, resource)`` allows the action when one of the identity's
roles grants it and the resource is inside the identity's scope, and says why either way.
Patterns are shell-style (``fraud-*``); an empty scope means "every project / every name".
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from tureen.errors import ConfigError, InvalidRequestError, suggest


class Action(StrEnum):
    READ_FEATURES = "read_features"    # get-online-features, feature-service models, metadata
    WRITE_FEATURES = "write_features"  # push, write-to-online-store, materialize, ingest
    PREDICT = "predict"                # infer/predict/explain, model metadata (per model)
    DEPLOY = "deploy"                  # create, start, stop, update, canary, rollback
    MODEL_CONTROL = "model_control"    # repository index/load/unload
    ADMIN = "admin"                    # tokens, teardown, audit log


ALL_ACTIONS: frozenset[Action] = frozenset(Action)

BUILTIN_ROLES: Mapping[str, frozenset[Action]] = {
    "reader": frozenset({Action.READ_FEATURES}),
    "writer": frozenset({Action.READ_FEATURES, Action.WRITE_FEATURES}),
    "predictor": frozenset({Action.PREDICT}),
    "deployer": frozenset({Action.DEPLOY, Action.PREDICT, Action.MODEL_CONTROL}),
    "admin": ALL_ACTIONS,
}

_ROLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")


def parse_action(name: str) -> Action:
    try:
        return Action(name)
    except ValueError:
        names = [a.value for a in Action]
        raise InvalidRequestError(
            f"unknown action {name!r}.{suggest(name, names)} Actions: {', '.join(names)}."
        ) from None


@dataclass(frozen=True)
class Identity:
    """An authenticated caller. ``subject`` names it in logs and the audit log."""

    subject: str
    source: str  # token | oidc | mtls | service | local
    roles: tuple[str, ...]
    projects: tuple[str, ...] = ()
    names: tuple[str, ...] = ()  # deployment / model name patterns
    expires_at: datetime | None = None
    token_id: str | None = None

    def describe(self) -> str:
        scope = []
        if self.projects:
            scope.append("projects " + ",".join(self.projects))
        if self.names:
            scope.append("names " + ",".join(self.names))
        where = f" ({'; '.join(scope)})" if scope else ""
        return f"{self.source}:{self.subject} roles {','.join(self.roles) or '-'}{where}"


@dataclass(frozen=True)
class Resource:
    """What an action is done to: a project and, for predict/deploy/model control, a name."""

    project: str | None = None
    name: str | None = None

    @classmethod
    def parse(cls, text: str) -> Resource:
        """``PROJECT``, ``PROJECT/NAME`` or ``/NAME`` (no project: a bare model server)."""
        project, sep, name = text.partition("/")
        return cls(project or None, name or None) if sep else cls(text or None, None)

    def __str__(self) -> str:
        if self.name is None:
            return self.project or "*"
        return f"{self.project or ''}/{self.name}"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reasons: tuple[str, ...]

    def explain(self) -> str:
        verdict = "ALLOW" if self.allowed else "DENY"
        return verdict + "\n" + "\n".join(f"  - {r}" for r in self.reasons)


def _matches(value: str | None, patterns: tuple[str, ...]) -> bool:
    if not patterns:
        return True
    if value is None:
        # An unscoped resource (e.g. the whole feature server) is only reachable by an
        # identity without that scope restriction.
        return False
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


class Policy:
    """Role → actions table: the built-in roles plus the custom ones from ``tureen.yaml``."""

    def __init__(self, custom_roles: Mapping[str, Iterable[str]] | None = None) -> None:
        roles = dict(BUILTIN_ROLES)
        for name, actions in (custom_roles or {}).items():
            if not _ROLE_NAME.match(name):
                raise ConfigError(
                    f"serving.auth.roles: role name {name!r} is not valid; use letters, digits, "
                    "'_' or '-', starting with a letter."
                )
            if name in BUILTIN_ROLES:
                raise ConfigError(
                    f"serving.auth.roles: {name!r} is a built-in role "
                    f"({', '.join(sorted(BUILTIN_ROLES))}); give the custom role another name."
                )
            try:
                roles[name] = frozenset(parse_action(a) for a in actions)
            except InvalidRequestError as exc:
                raise ConfigError(f"serving.auth.roles.{name}: {exc}") from None
        self.roles: Mapping[str, frozenset[Action]] = roles
        self._by_roles: dict[tuple[str, ...], frozenset[Action]] = {}

    def check_role(self, role: str) -> str:
        if role not in self.roles:
            raise InvalidRequestError(
                f"unknown role {role!r}.{suggest(role, self.roles)} Roles: "
                f"{', '.join(sorted(self.roles))} (custom roles go in serving.auth.roles of "
                "tureen.yaml)."
            )
        return role

    def actions_of(self, identity: Identity) -> frozenset[Action]:
        got = self._by_roles.get(identity.roles)
        if got is None:
            out: set[Action] = set()
            for r in identity.roles:
                out |= self.roles.get(r, frozenset())
            got = frozenset(out)
            if len(self._by_roles) < 1024:
                self._by_roles[identity.roles] = got
        return got

    def allows(self, identity: Identity, action: Action, resource: Resource) -> bool:
        """The fast path of ``decide`` (no explanation)."""
        if action not in self.actions_of(identity):
            return False
        return _matches(resource.project, identity.projects) and (
            resource.name is None or _matches(resource.name, identity.names)
        ) and not (identity.names and resource.name is None and action in _NAMED)

    def decide(self, identity: Identity, action: Action, resource: Resource) -> Decision:
        reasons: list[str] = [f"identity {identity.describe()}"]
        granting = [r for r in identity.roles if action in self.roles.get(r, frozenset())]
        unknown = [r for r in identity.roles if r not in self.roles]
        if unknown:
            reasons.append(f"roles not defined in this policy (grant nothing): "
                           f"{', '.join(unknown)}")
        if not granting:
            who = ", ".join(
                sorted(n for n, acts in self.roles.items() if action in acts))
            reasons.append(f"no role of the identity grants {action.value} "
                           f"(roles that do: {who})")
            return Decision(False, tuple(reasons))
        reasons.append(f"role {granting[0]} grants {action.value}")
        if not _matches(resource.project, identity.projects):
            reasons.append(f"project {resource.project or '(none)'} is outside the identity's "
                           f"projects {', '.join(identity.projects)}")
            return Decision(False, tuple(reasons))
        if identity.projects:
            reasons.append(f"project {resource.project} matches {', '.join(identity.projects)}")
        if identity.names:
            if resource.name is None and action in _NAMED:
                reasons.append(f"{action.value} without a deployment/model name is outside an "
                               f"identity scoped to names {', '.join(identity.names)}")
                return Decision(False, tuple(reasons))
            if resource.name is not None and not _matches(resource.name, identity.names):
                reasons.append(f"name {resource.name} is outside the identity's names "
                               f"{', '.join(identity.names)}")
                return Decision(False, tuple(reasons))
            if resource.name is not None:
                reasons.append(f"name {resource.name} matches {', '.join(identity.names)}")
        return Decision(True, tuple(reasons))


#: actions on a named deployment/model: a name-scoped identity needs a name to match
_NAMED = frozenset({Action.PREDICT, Action.DEPLOY, Action.MODEL_CONTROL})
