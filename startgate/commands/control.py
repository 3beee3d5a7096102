"""`startgate release` and `startgate drop`: ask the coordinator to act on held starts.

Both publish a `Command` on `cmd/<verb>` and wait for the leader coordinator's `Reply` on
`coordinator/reply/<request id>`. A request nobody answers ends with a clear message and exit 1
after `--timeout` seconds. Exit 0 when the coordinator did everything asked, 1 when it refused
or failed any part (each VMID's outcome is printed), 2 on bad input (nothing is sent).
"""

from __future__ import annotations

import getpass
import socket
import time
from typing import TYPE_CHECKING, Annotated

import typer

from startgate.commands import _args
from startgate.commands import display as d
from startgate.commands._common import EXIT_NOT_OK, EXIT_OK, guarded, load_config

if TYPE_CHECKING:
    from startgate.bus.messages import Reply
    from startgate.config import Config

VmidArgs = Annotated[list[str] | None, typer.Argument(help="VMIDs", show_default=False, metavar="VMID")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the coordinator's reply as JSON")]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", min=0.1, help="seconds to wait for the coordinator's answer")
]


def _requested_by() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "?"
    return f"{user}@{socket.gethostname().split('.', 1)[0]}"[:256]


def _targets(cfg: Config, values: list[str] | None, every: bool) -> list[int]:
    wanted = _args.vmids(values or [])
    if every and wanted:
        raise _args.usage_error("give VMIDs or --all, not both")
    if not every and not wanted:
        raise _args.usage_error("name the VMIDs to act on (or --all)")
    missing = _args.unknown(wanted, cfg.proxmox.config_dir)
    if missing:
        from startgate.commands._bus import read_state  # noqa: PLC0415 - only when a VMID is not configured

        held = read_state(cfg).held
        missing = [v for v in missing if v not in held]
    if missing:
        raise _args.unknown_error(missing, cfg.proxmox.config_dir)
    return wanted


def render_reply(reply: Reply) -> list[str]:
    """The coordinator's answer: its message, then one line per VMID."""
    who = f"coordinator {reply.node}" if reply.node else "coordinator"
    lines = [f"{who}: {reply.message or ('done' if reply.ok else 'not done')}"]
    rows = [[str(i.vmid), i.outcome, i.detail] for i in reply.items]
    if rows:
        lines.extend("  " + row for row in d.table(("VMID", "OUTCOME", "DETAIL"), rows))
    return lines


def _send(cfg: Config, verb: str, vmids: list[int], *, every: bool, force: bool, timeout: float) -> Reply:
    from startgate.bus.messages import Command  # noqa: PLC0415 - pydantic only when a command runs
    from startgate.commands._bus import ask  # noqa: PLC0415

    command = Command(
        time=time.time(),
        verb="release" if verb == "release" else "drop",
        vmids=vmids,
        all=every,
        force=force,
        requested_by=_requested_by(),
    )
    return ask(cfg, command, timeout)


def _finish(reply: Reply, as_json: bool) -> None:
    if as_json:
        typer.echo(d.dumps(d.dump(reply)))
    else:
        typer.echo("\n".join(render_reply(reply)))
    raise typer.Exit(EXIT_OK if reply.ok else EXIT_NOT_OK)


@guarded
def release(
    ctx: typer.Context,
    *,
    vmid: VmidArgs = None,
    every: Annotated[bool, typer.Option("--all", help="every held start")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="start even though a gate is unhealthy (one-shot ticket)")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask before --force")] = False,
    as_json: JsonOpt = False,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Ask the coordinator to release held starts now (when their gates allow), or anyway with --force."""
    cfg = load_config(ctx)
    vmids = _targets(cfg, vmid, every)
    if force and not yes:
        what = "every held guest" if every else f"guest{'s' if len(vmids) > 1 else ''} {d.vmid_list(vmids)}"
        prompt = f"Start {what} even if its gates are unhealthy? Its disks may not be reachable yet."
        if not typer.confirm(prompt, default=False, err=True):
            typer.echo("startgate: nothing sent", err=True)
            raise typer.Exit(EXIT_NOT_OK)
    _finish(_send(cfg, "release", vmids, every=every, force=force, timeout=timeout), as_json)


@guarded
def drop(
    ctx: typer.Context,
    *,
    vmid: VmidArgs = None,
    every: Annotated[bool, typer.Option("--all", help="every held start")] = False,
    as_json: JsonOpt = False,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Forget held starts: the coordinator will not start these guests."""
    cfg = load_config(ctx)
    vmids = _targets(cfg, vmid, every)
    _finish(_send(cfg, "drop", vmids, every=every, force=False, timeout=timeout), as_json)


def register(app: typer.Typer) -> None:
    """Attach `release` and `drop` to the root app."""
    app.command("release")(release)
    app.command("drop")(drop)
