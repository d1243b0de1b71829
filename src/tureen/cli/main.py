"""``tureen``: one command, with subcommands contributed by one module per area.

Each module in ``_COMMAND_MODULES`` exposes ``register(group: click.Group) -> None``; keep
its top-level imports light (click, tureen.errors) and import the rest inside the commands,
so ``tureen --help`` stays fast (``tests/unit/cli/test_cli_startup.py`` checks this).
Every long option accepts both spellings, ``--http-port`` and ``--http_port`` (added after
registration). Errors derived from TureenError, and a port already in use, print a one-line
message (no traceback) and exit 1.
"""

from __future__ import annotations

import errno
import importlib
import logging
import sys
from typing import Any

import click

from tureen.errors import PortInUseError, TureenError

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
    "tureen.cli.ingest",
    "tureen.cli.pipelines",
)


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TureenError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            # Ctrl-C: what was being written was staged and is removed, never half-kept
            click.secho("Interrupted.", fg="red", err=True)
            sys.exit(130)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            _fail(str(PortInUseError.from_os_error(exc)))


def _fail(message: str) -> None:
    click.secho(f"Error: {message}", fg="red", err=True)
    sys.exit(1)


def _both_spellings(cmd: click.Command) -> None:
    """Let every ``--long-option`` also be written ``--long_option`` (and vice versa): KServe's
    flags use underscores, the Unix habit hyphens, and users type both."""
    taken = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    for param in cmd.params:
        if not isinstance(param, click.Option):
            continue
        for opts in (param.opts, param.secondary_opts):
            for opt in list(opts):
                if not opt.startswith("--"):
                    continue
                for alt in ("--" + opt[2:].replace("-", "_"), "--" + opt[2:].replace("_", "-")):
                    if alt not in taken:
                        opts.append(alt)
                        taken.add(alt)
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            _both_spellings(sub)


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
_both_spellings(cli)


def main() -> None:
    cli(prog_name="tureen")
