"""The `startgate` command line (typer).

This module builds the root app and is, with the hook entry, the only place that exits the
process. Each area's commands live in `startgate.commands.<area>` and register themselves here;
they raise `typer.Exit(code)` and let startgate's own errors travel up to `main()`, which maps
them to the documented exit codes: 0 success, 1 "not OK", 2 bad usage or config.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from startgate import __version__
from startgate.commands import (
    attach,
    config_cmd,
    control,
    coordinator_cmd,
    doctor,
    events,
    hook_cmd,
    sim_cmd,
    status,
    why,
)
from startgate.commands._common import EXIT_NOT_OK, EXIT_OK, EXIT_USAGE
from startgate.errors import ConfigError, StartgateError

app = typer.Typer(
    name="startgate",
    help="Hold Proxmox VE guest starts until their gates (a LINSTOR controller VM) are healthy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"startgate {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="startgate.toml (default: $STARTGATE_CONFIG, else /etc/startgate/startgate.toml)",
        ),
    ] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="more log output")] = 0,
    _version_flag: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    """Root options shared by every command."""
    level = logging.WARNING - 10 * min(verbose, 2)
    fmt = "%(levelname)s %(name)s: %(message)s"
    if os.environ.get("STARTGATE_LOG_TIMES"):  # journald stamps lines itself; a plain file does not
        fmt = "%(asctime)s.%(msecs)03d " + fmt
    logging.basicConfig(level=level, stream=sys.stderr, format=fmt, datefmt="%H:%M:%S")
    ctx.obj = config


config_cmd.register(app)
events.register(app)
hook_cmd.register(app)
sim_cmd.register(app)
status.register(app)
control.register(app)
doctor.register(app)
why.register(app)
attach.register(app)
coordinator_cmd.register(app)


def main() -> None:
    """Console-script entry: typer handles usage errors (exit 2); startgate's own errors map here."""
    try:
        app()
    except ConfigError as exc:
        typer.echo(f"startgate: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except StartgateError as exc:
        typer.echo(f"startgate: {exc}", err=True)
        sys.exit(EXIT_NOT_OK)
