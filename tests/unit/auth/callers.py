"""Run code as if serving a request of a given caller (the guard chain's context)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tureen.auth.chain import PolicyAuthorizer
from tureen.auth.policy import Identity, Policy
from tureen.serving.context import RequestContext, current_context


@contextmanager
def caller(identity: Identity | None, project: str = "proj") -> Iterator[RequestContext]:
    ctx = RequestContext("test-1", "http", "POST /test", {}, identity=identity,
                         authorizer=PolicyAuthorizer(Policy(), project))
    token = current_context.set(ctx)
    try:
        yield ctx
    finally:
        current_context.reset(token)
