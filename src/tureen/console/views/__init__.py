"""The console's pages, one module per area; each exposes ``ROUTES``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tureen.console.page import Route


def all_routes() -> list[Route]:
    from tureen.console.views import (
        deploy_actions,
        deployments,
        entities,
        features,
        live,
        login,
        models,
        overview,
        pipelines,
    )

    out: list[Route] = []
    for mod in (overview, login, features, entities, models, deploy_actions, deployments, live,
                pipelines):
        out.extend(mod.ROUTES)
    return out
