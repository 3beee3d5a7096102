"""`startgate attach` / `detach`: set or remove `hookscript:` on guests, through `pvesh` as root.

Only root@pam may set a guest's hookscript (proxmox/qemu-server API2/Qemu.pm
`$check_vm_modify_config_perm`, proxmox/pve-container LXC.pm: "changing the hookscript is only
allowed for root@pam"), and an API token is not root@pam, so this runs
`pvesh set /nodes/<node>/<qemu|lxc>/<vmid>/config --hookscript <volid>` (detach:
`--delete hookscript`) on a node, as a subprocess with an argv list (never a shell). `pvesh`
forwards to the guest's node itself. Each change is printed as it is made.

attach never overwrites another hookscript unless `--replace`; detach only removes startgate's
own. Exit 0 when every change was made (or, with `--dry-run`, would be), 1 when any was refused
or failed, 2 on bad input.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from startgate.commands import _args
from startgate.commands import display as d
from startgate.commands._common import EXIT_NOT_OK, EXIT_OK, guarded, load_config

if TYPE_CHECKING:
    from startgate.config import Config
    from startgate.guests import Guest

Action = Literal["set", "delete", "unchanged", "refused", "failed"]
PVESH = "pvesh"
NO_PVESH = "pvesh not found: attach/detach run on a Proxmox node, as root"


@dataclass(frozen=True)
class Change:
    """What attach/detach does (or did) to one guest."""

    guest: Guest
    action: Action
    before: str | None
    after: str | None
    detail: str = ""

    def argv(self) -> list[str]:
        """The pvesh command line for a change that modifies the guest."""
        path = self.guest.file.api_path
        if self.action == "delete":
            return [PVESH, "set", path, "--delete", "hookscript"]
        return [PVESH, "set", path, "--hookscript", str(self.after)]

    def line(self, *, dry_run: bool) -> str:
        """One line for people: `VM 101 (web1) on pve1: hookscript none -> local:snippets/x`."""
        who = f"{self.guest.label} on {self.guest.file.node}"
        before = self.before or "none"
        if self.action in {"set", "delete"}:
            verb = "would change" if dry_run else "changed"
            return f"{who}: {verb} hookscript {before} -> {self.after or 'none'}{self.detail}"
        return f"{who}: {self.action}: {self.detail}"

    def as_dict(self, *, dry_run: bool) -> dict[str, object]:
        """The change as JSON."""
        return {
            "vmid": self.guest.vmid,
            "node": self.guest.file.node,
            "type": self.guest.file.type,
            "action": self.action,
            "before": self.before,
            "after": self.after,
            "detail": self.detail,
            "dry_run": dry_run,
        }


def plan_attach(cfg: Config, guests: list[Guest], *, replace: bool) -> list[Change]:
    """The change attach makes to each guest."""
    volid = cfg.hook.volid
    out = []
    for g in guests:
        current = g.config.hookscript
        note = "" if g.memberships else " (not a member of any gate: the hook lets its starts through)"
        if current == volid:
            out.append(Change(g, "unchanged", current, current, f"already has {volid}"))
        elif current is None:
            out.append(Change(g, "set", None, volid, note))
        elif replace:
            out.append(Change(g, "set", current, volid, f" (replacing {current}){note}"))
        else:
            out.append(
                Change(
                    g,
                    "refused",
                    current,
                    current,
                    f"has another hookscript, {current}; not replaced (--replace)",
                )
            )
    return out


def plan_detach(cfg: Config, guests: list[Guest]) -> list[Change]:
    """The change detach makes to each guest: remove startgate's hookscript, leave any other alone."""
    volid = cfg.hook.volid
    out = []
    for g in guests:
        current = g.config.hookscript
        if current == volid:
            out.append(Change(g, "delete", current, None))
        elif current is None:
            out.append(Change(g, "unchanged", None, None, "has no hookscript"))
        else:
            out.append(
                Change(
                    g, "refused", current, current, f"its hookscript {current} is not startgate's; left alone"
                )
            )
    return out


def apply(change: Change) -> Change:
    """Run pvesh for one change; the returned change says `failed` with pvesh's message if it failed."""
    try:
        done = subprocess.run(  # noqa: S603 - argv list; every part is validated (node, VMID, volid)
            change.argv(), capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError:
        return _failed(change, NO_PVESH)
    except subprocess.TimeoutExpired:
        return _failed(change, "pvesh did not finish within 60s")
    if done.returncode != 0:
        why = (done.stderr.strip() or done.stdout.strip() or f"exit code {done.returncode}").splitlines()[-1]
        return _failed(change, f"pvesh failed: {why}")
    return change


def _failed(change: Change, detail: str) -> Change:
    return Change(change.guest, "failed", change.before, change.before, detail)


def _select(cfg: Config, values: list[str] | None, every: bool, want: str) -> list[Guest]:
    from startgate import guests  # noqa: PLC0415 - keep `startgate --help` light

    wanted = _args.vmids(values or [])
    if every == bool(wanted):
        raise _args.usage_error("give VMIDs or --all (one of them)")
    rules = guests.rules(cfg.gates)
    if every:
        found, problems = guests.load_all(cfg.proxmox.config_dir, rules)
        for p in problems:
            typer.echo(f"startgate: skipped: {p}", err=True)
        if want == "members":
            return [g for g in found if g.memberships]
        return [g for g in found if g.config.hookscript == cfg.hook.volid]
    missing = _args.unknown(wanted, cfg.proxmox.config_dir)
    if missing:
        raise _args.unknown_error(missing, cfg.proxmox.config_dir)
    out = []
    for vmid in wanted:
        g = guests.find(cfg.proxmox.config_dir, vmid, rules)
        if g is None:
            raise _args.unknown_error([vmid], cfg.proxmox.config_dir)
        out.append(g)
    return out


def _run(changes: list[Change], *, dry_run: bool, as_json: bool) -> None:
    results: list[Change] = []
    for change in changes:
        if results and results[-1].detail == NO_PVESH:
            break  # no point trying the others
        result = change if dry_run or change.action not in {"set", "delete"} else apply(change)
        results.append(result)
        if not as_json:
            typer.echo(result.line(dry_run=dry_run))
    if as_json:
        typer.echo(d.dumps([r.as_dict(dry_run=dry_run) for r in results]))
    elif not results:
        typer.echo("no guest to change")
    bad = any(r.action in {"refused", "failed"} for r in results)
    raise typer.Exit(EXIT_NOT_OK if bad else EXIT_OK)


VmidArgs = Annotated[list[str] | None, typer.Argument(help="VMIDs", show_default=False, metavar="VMID")]
DryRun = Annotated[bool, typer.Option("--dry-run", "-n", help="print the changes, make none")]
JsonOpt = Annotated[bool, typer.Option("--json", help="the changes as JSON")]


@guarded
def attach(
    ctx: typer.Context,
    vmid: VmidArgs = None,
    *,
    every: Annotated[bool, typer.Option("--all", help="every member guest of any gate")] = False,
    dry_run: DryRun = False,
    replace: Annotated[bool, typer.Option("--replace", help="overwrite another hookscript")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Set startgate's hookscript (hook.volid) on guests, with pvesh as root; never silently overwrites."""
    cfg = load_config(ctx)
    _run(
        plan_attach(cfg, _select(cfg, vmid, every, "members"), replace=replace),
        dry_run=dry_run,
        as_json=as_json,
    )


@guarded
def detach(
    ctx: typer.Context,
    vmid: VmidArgs = None,
    *,
    every: Annotated[
        bool, typer.Option("--all", help="every guest that carries startgate's hookscript")
    ] = False,
    dry_run: DryRun = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove startgate's hookscript from guests (another hookscript is left alone)."""
    cfg = load_config(ctx)
    _run(plan_detach(cfg, _select(cfg, vmid, every, "attached")), dry_run=dry_run, as_json=as_json)


def register(app: typer.Typer) -> None:
    """Attach `attach` and `detach` to the root app."""
    app.command("attach")(attach)
    app.command("detach")(detach)
