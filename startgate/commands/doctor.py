"""`startgate doctor`: check this node's setup; one line per check (ok / warn / fail) with a fix.

Exit 0 when nothing fails (warnings allowed), 1 when any check fails, 2 on a bad config.
`--root` reads the node's files (systemd units, dpkg status, the hook file) below another
directory, for chroots and tests; guest configs and storage.cfg come from `proxmox.config_dir`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from startgate.commands import display as d
from startgate.commands._common import EXIT_NOT_OK, EXIT_OK, guarded, load_config

if TYPE_CHECKING:
    from startgate.commands._state import ClusterState
    from startgate.config import Config
    from startgate.doctor.result import Finding


def render(findings: list[Finding]) -> list[str]:
    """`ok    check  message`, with `fix: ...` under each warn and fail, then the totals."""
    width = max((len(f.check) for f in findings), default=0)
    lines = []
    for f in findings:
        lines.append(f"{f.status:<4}  {f.check:<{width}}  {f.message}")
        if f.fix and f.status != "ok":
            lines.append(f"{'':<4}  {'':<{width}}  fix: {f.fix}")
    counts = {s: sum(1 for f in findings if f.status == s) for s in ("ok", "warn", "fail")}
    lines.append(f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail")
    return lines


def _connect(cfg: Config) -> Callable[[str], None]:
    from startgate.bus.mqtt import Publisher  # noqa: PLC0415 - keep `startgate --help` light
    from startgate.bus.values import ClientSettings  # noqa: PLC0415

    settings = ClientSettings.from_config(cfg.bus)

    def connect(url: str) -> None:
        with Publisher([url], settings) as pub:
            pub.connect(cfg.bus.connect_timeout_s + 0.5)

    return connect


def _read_state(cfg: Config) -> ClusterState | None:
    from startgate.commands._bus import read_state  # noqa: PLC0415
    from startgate.errors import BusError  # noqa: PLC0415

    try:
        return read_state(cfg)
    except BusError:
        return None


@guarded
def doctor(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object with every check")] = False,
    root: Annotated[
        Path, typer.Option("--root", help="read the node's files below this directory (chroots, tests)")
    ] = Path("/"),
) -> None:
    """Check the setup: hookscripts, the gate VM, storage.cfg, the API token, brokers, units."""
    from startgate.doctor import pveapi, service  # noqa: PLC0415
    from startgate.doctor.run import World, run  # noqa: PLC0415

    cfg = load_config(ctx)
    world = World(
        root=root,
        permissions=pveapi.permissions,
        connect=_connect(cfg),
        read_state=lambda: _read_state(cfg),
        unit_state=service.systemctl_is_active,
    )
    findings = run(cfg, world)
    failed = any(f.status == "fail" for f in findings)
    if as_json:
        typer.echo(d.dumps({"ok": not failed, "checks": [f.as_dict() for f in findings]}))
    else:
        typer.echo("\n".join(render(findings)))
    raise typer.Exit(EXIT_NOT_OK if failed else EXIT_OK)


def register(app: typer.Typer) -> None:
    """Attach `doctor` to the root app."""
    app.command("doctor")(doctor)
