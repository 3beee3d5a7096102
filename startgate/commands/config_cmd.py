"""`startgate config check`: validate the configuration and print it with secrets masked."""

from __future__ import annotations

import json

import typer

from startgate.commands._common import EXIT_USAGE, guarded, load_config

config_app = typer.Typer(help="Inspect the startgate configuration.", no_args_is_help=True)


@config_app.command("check")
@guarded
def check(ctx: typer.Context) -> None:
    """Validate the config; print the effective config (secrets masked) or the errors (exit 2)."""
    from startgate.config import masked, read_secret  # noqa: PLC0415 - keep `startgate --help` light
    from startgate.errors import SecretFileError  # noqa: PLC0415

    cfg = load_config(ctx)
    secrets = [("proxmox.token_secret_file", cfg.proxmox.token_secret_file)]
    if cfg.bus.password_file is not None:
        secrets.append(("bus.password_file", cfg.bus.password_file))
    for role in ("coordinator", "admin"):
        ident = getattr(cfg.bus, role)
        if ident is not None and ident.password_file is not None:
            secrets.append((f"bus.{role}.password_file", ident.password_file))
    problems: list[str] = []
    for key, path in secrets:
        try:
            read_secret(path, key)
        except SecretFileError as exc:
            problems.extend(exc.problems)
    typer.echo(json.dumps(masked(cfg), indent=2))
    for key, path in secrets:
        typer.echo(f"{key}: {path} (content masked)")
    if problems:
        for p in problems:
            typer.echo(f"warning: {p}", err=True)
        raise typer.Exit(EXIT_USAGE)


def register(app: typer.Typer) -> None:
    """Attach the `config` command group to the root app."""
    app.add_typer(config_app, name="config")
