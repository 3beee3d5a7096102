"""What every command shares: exit codes, loading the config, turning errors into exit codes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import typer

from startgate.errors import ConfigError, StartgateError

if TYPE_CHECKING:
    from startgate.config import Config

EXIT_OK = 0
EXIT_NOT_OK = 1
EXIT_USAGE = 2

P = ParamSpec("P")
R = TypeVar("R")


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Map startgate's errors to exit codes inside the command (2 for config, 1 for the rest)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            typer.echo(f"startgate: {exc}", err=True)
            raise typer.Exit(EXIT_USAGE) from exc
        except StartgateError as exc:
            typer.echo(f"startgate: {exc}", err=True)
            raise typer.Exit(EXIT_NOT_OK) from exc

    return wrapper


def config_path(ctx: typer.Context) -> Path | None:
    """The `--config` given to the root command, if any."""
    root = ctx.find_root()
    return root.obj if isinstance(root.obj, Path) else None


def load_config(ctx: typer.Context) -> Config:
    """Load and validate the config chosen by `--config`, `$STARTGATE_CONFIG` or the default path."""
    from startgate.config import load  # noqa: PLC0415 - pydantic is heavy; only commands that need it pay

    return load(config_path(ctx))
