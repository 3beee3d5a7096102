"""`startgate hook`, `startgate install` and `startgate agent`: what runs on every node."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from startgate.commands._common import EXIT_NOT_OK, EXIT_OK, config_path, guarded, load_config

log = logging.getLogger(__name__)


@guarded
def hook(
    ctx: typer.Context,
    vmid: Annotated[str, typer.Argument(help="the guest's VMID, as Proxmox passes it")],
    phase: Annotated[str, typer.Argument(help="pre-start, post-start, pre-stop or post-stop")],
) -> None:
    """Run the hookscript by hand, exactly as the snippet does (exit 0 allow, 1 hold)."""
    from startgate.hooks.entry import main  # noqa: PLC0415 - keep `startgate --help` light
    from startgate.hooks.settings import CONFIG_ENV  # noqa: PLC0415

    env = dict(os.environ)
    chosen = config_path(ctx)
    if chosen is not None:
        env[CONFIG_ENV] = str(chosen)
    raise typer.Exit(main([vmid, phase], env=env))


@guarded
def install(
    ctx: typer.Context,
    snippets: Annotated[
        Path | None, typer.Option("--snippets", help="folder for the hookscript (default: hook.snippet's)")
    ] = None,
    units: Annotated[
        Path | None,
        typer.Option("--units", help="folder for the systemd units (default /etc/systemd/system)"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would change; change nothing")] = False,
) -> None:
    """Write the hookscript snippet and systemd units, create the spool/state folders (idempotent)."""
    from startgate.config import resolve_path  # noqa: PLC0415 - pydantic: only commands that need it
    from startgate.hooks.install import install as do_install  # noqa: PLC0415
    from startgate.hooks.install import next_steps  # noqa: PLC0415

    cfg = load_config(ctx)
    path = resolve_path(config_path(ctx))
    steps = do_install(cfg, path, os.environ, snippets_dir=snippets, units_dir=units, dry_run=dry_run)
    for step in steps:
        typer.echo(step.line())
    if any(s.action == "error" for s in steps):
        raise typer.Exit(EXIT_NOT_OK)
    if not dry_run:
        typer.echo("next:")
        for line in next_steps(cfg):
            typer.echo(f"  {line}")
    raise typer.Exit(EXIT_OK)


@guarded
def agent(
    ctx: typer.Context,
    boot_id_file: Annotated[
        Path, typer.Option("--boot-id-file", help="where this boot's id is read (for tests)")
    ] = Path("/proc/sys/kernel/random/boot_id"),
    poll: Annotated[float, typer.Option("--poll", min=0.05, help="seconds between spool looks")] = 0.5,
    link_kind: Annotated[
        str, typer.Option("--link", help="paho (the bus adapter) or oneshot (synchronous, no thread)")
    ] = "paho",
) -> None:
    """Run the node agent (systemd startgate-agent.service) until SIGTERM/SIGINT."""
    from startgate.bus.mqtt import ClientSettings  # noqa: PLC0415
    from startgate.config import resolve_path  # noqa: PLC0415 - pydantic: only commands that need it
    from startgate.hooks import settings as hook_settings  # noqa: PLC0415
    from startgate.hooks.agent import Agent, AgentOptions  # noqa: PLC0415
    from startgate.hooks.links import AgentLink, OneshotLink, PahoLink  # noqa: PLC0415
    from startgate.hooks.member import link_options  # noqa: PLC0415
    from startgate.systemd import SystemdNotifier  # noqa: PLC0415

    cfg = load_config(ctx)
    path = str(resolve_path(config_path(ctx)))
    dump = cfg.model_dump(mode="json")
    hook_settings.write_cache(path, dump, os.environ)  # the hook's fast path starts warm
    settings = hook_settings.from_dump(dump, path)
    link: AgentLink
    if link_kind == "oneshot":
        link = OneshotLink(
            link_options(settings, "startgate-agent"), timeout_s=settings.bus.connect_timeout_s
        )
    elif link_kind == "paho":
        client_id = f"startgate-agent-{settings.node_name}"
        link = PahoLink(
            list(cfg.bus.brokers), ClientSettings.from_config(cfg.bus), client_id, cfg.bus.connect_timeout_s
        )
    else:
        raise typer.BadParameter(f"--link {link_kind!r}: use paho or oneshot")
    service = Agent(settings, link, SystemdNotifier(), AgentOptions(boot_id_path=boot_id_file, poll_s=poll))
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    service.run(stop)
    raise typer.Exit(EXIT_OK)


def register(app: typer.Typer) -> None:
    """Attach `hook`, `install` and `agent` to the root app."""
    app.command("hook")(hook)
    app.command("install")(install)
    app.command("agent")(agent)
