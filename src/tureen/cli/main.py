"""``tureen``: one command, with subcommands contributed by one module per area.

Each module in ``_COMMAND_MODULES`` exposes ``register(group: click.Group) -> None``.
Errors derived from TureenError print a one-line message (no traceback) and exit 1.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from tureen.errors import TureenError

_COMMAND_MODULES = (
    "tureen.cli.repo",
    "tureen.cli.serving",
    "tureen.cli.feature_server",
    "tureen.cli.quickstart",
    "tureen.cli.models",
    "tureen.cli.deploy",
    "tureen.cli.logs",
    "tureen.cli.auth",
    "tureen.cli.console",
)


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TureenError as exc:
            click.secho(f"Error: {exc}", fg="red", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tureen")
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def cli(verbose: bool) -> None:
    """tureen: define features once, train on them, serve them with your models."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


for _name in _COMMAND_MODULES:
    try:
        _mod = importlib.import_module(_name)
    except ModuleNotFoundError as _exc:  # an area not built yet must not break the others
        if _exc.name != _name:
            raise
        continue
    _mod.register(cli)


def main() -> None:
    cli(prog_name="tureen")
