"""`startgate why VMID`: one paragraph on one guest: its gates and why, held or not, and what it waits for.

Membership comes from the guest's config under `proxmox.config_dir` (which disk on which storage,
which tag, a VMID listing); held or not, and the gates' health, from the retained state on the
bus. What a held start waits for, in the order the coordinator needs it:

1. every gate it waits on is healthy (no health published counts as not healthy);
2. for a gate that requires node readiness (LINSTOR), the guest's node is among the gate's
   `nodes_ready` (its satellite is ONLINE);
3. a coordinator is leading (fresh status) to re-issue the start, in startup order, at most
   `coordinator.max_parallel_starts` per node.
A gate with `on_timeout = "start"` releases it anyway `timeout_s` after it was first held.

Exit 0 when no start of the guest is held (or one is being released), 1 when one is held or its
release failed (or the bus cannot be read), 2 for a VMID that is out of range or unknown.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from startgate.commands import _args
from startgate.commands import display as d
from startgate.commands._common import EXIT_NOT_OK, EXIT_OK, guarded, load_config

if TYPE_CHECKING:
    from startgate.bus.messages import HeldStart
    from startgate.commands._state import ClusterState
    from startgate.config import Config
    from startgate.guests import Guest

STALE_BEATS = 3


def waiting_for(h: HeldStart, state: ClusterState, now: float) -> list[str]:
    """What the held start `h` still needs before the coordinator re-issues it (empty: nothing)."""
    out: list[str] = []
    for gate in h.gates:
        health = state.gates.get(gate)
        if health is None:
            out.append(f'gate "{gate}" to publish its health (none yet)')
        elif not health.healthy:
            detail = f": {health.detail}" if health.detail else ""
            out.append(
                f'gate "{gate}" to become healthy (unhealthy since {d.since(health.since, now)}{detail})'
            )
        elif health.nodes_ready is not None and h.node not in health.nodes_ready:
            out.append(f'node {h.node} to be ready for gate "{gate}" (its satellite is not ONLINE)')
    c = state.coordinator
    if c is None or c.state != "leader" or now - c.time > STALE_BEATS * c.heartbeat_s:
        out.append("a coordinator to lead and re-issue the start (none is running now)")
    return out


def _membership_text(g: Guest, cfg: Config) -> str:
    if g.exempt_from and not g.memberships:
        gates = ", ".join(f'"{n}"' for n in g.exempt_from)
        return f"is the own VM of gate {gates}, so it is never held by it."
    if not g.memberships:
        return "is a member of no gate: startgate never holds its starts."
    parts = "; ".join(ms.describe() for ms in g.memberships)
    text = f"is a member of {parts}."
    hook = g.config.hookscript
    if hook is None:
        text += f" It has no hookscript, so its starts are not gated (startgate attach {g.vmid})."
    elif hook != cfg.hook.volid:
        text += f" Its hookscript is {hook}, not startgate's, so its starts are not gated."
    return text


def _held_text(cfg: Config, h: HeldStart | None, g: Guest | None, state: ClusterState, now: float) -> str:
    if h is None:
        if g is None or not g.memberships:
            return "No start of it is held."
        sick = [n for n in g.gates if not (state.gates.get(n) and state.gates[n].healthy)]
        if sick:
            return f"No start of it is held; a start now would be held until {', '.join(sick)} is healthy."
        return "No start of it is held, and its gates are healthy: a start now goes through."
    ha = ", HA-managed" if h.ha else ""
    head = (
        f"Its start on {h.node} has been held since {d.since(h.first_held, now)} "
        f"({h.attempts} attempt{'s' if h.attempts != 1 else ''}{ha})"
    )
    if h.state == "releasing":
        return head + "; the coordinator is starting it now."
    if h.state == "failed":
        reason = f": {h.reason}" if h.reason else ""
        return f"{head}; its release failed{reason}. `startgate release {h.vmid}` tries again."
    needs = waiting_for(h, state, now)
    order = f" (startup order {h.startup_order})" if h.startup_order is not None else ""
    text = f"{head}; it is waiting for {'; '.join(needs)}." if needs else f"{head}; nothing blocks it: "
    if not needs:
        text += (
            f"the coordinator re-issues it next{order}, at most "
            f"{cfg.coordinator.max_parallel_starts} starts at a time on {h.node}."
        )
    for gate in h.gates:
        try:
            rule = cfg.gate(gate)
        except KeyError:
            continue
        if rule.timeout_s > 0 and rule.on_timeout == "start":
            text += f' Gate "{gate}" starts it anyway at {d.clock(h.first_held + rule.timeout_s)}.'
    return text


def explain(
    cfg: Config, vmid: int, g: Guest | None, state: ClusterState, now: float, *, bus_error: str = ""
) -> str:
    """The paragraph for guest `vmid` (its config `g` may be missing when only a held record exists)."""
    h = state.held.get(vmid)
    if g is not None:
        who = f"{g.label} on {g.file.node} " + _membership_text(g, cfg)
    else:
        label = d.guest_label(vmid, h.type) if h else f"Guest {vmid}"
        who = f"{label} has no config on any node (destroyed?), but a held start remains."
    if bus_error:
        return f"{who} Whether a start of it is held is unknown: {bus_error}"
    text = f"{who} {_held_text(cfg, h, g, state, now)}"
    ticket = state.tickets.get(vmid)
    if ticket is not None and ticket.expires > now:
        text += f" A release ticket lets its next start through until {d.clock(ticket.expires)}."
    return text


def why_json(
    cfg: Config, vmid: int, g: Guest | None, state: ClusterState, now: float, *, bus_error: str = ""
) -> dict[str, Any]:
    """The answer as JSON (the held start exactly as on the wire)."""
    h = state.held.get(vmid)
    return {
        "vmid": vmid,
        "node": g.file.node if g else (h.node if h else None),
        "type": g.file.type if g else (h.type if h else None),
        "name": g.config.name if g else (h.name if h else None),
        "hookscript": g.config.hookscript if g else None,
        "memberships": [
            {
                "gate": ms.gate,
                "reasons": [{"kind": r.kind, "detail": r.detail, "key": r.key} for r in ms.reasons],
            }
            for ms in (g.memberships if g else ())
        ],
        "exempt_from": list(g.exempt_from) if g else [],
        "held": d.dump(h) if h else None,
        "waiting_for": waiting_for(h, state, now) if h and h.state == "held" else [],
        "text": explain(cfg, vmid, g, state, now, bus_error=bus_error),
        "bus_error": bus_error or None,
    }


@guarded
def why(
    ctx: typer.Context,
    vmid: Annotated[str, typer.Argument(help="the guest's VMID", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Why a guest is (or is not) held: its gates and why, and what its start waits for."""
    from startgate import guests  # noqa: PLC0415 - keep `startgate --help` light
    from startgate.commands._bus import read_state  # noqa: PLC0415
    from startgate.commands._state import ClusterState  # noqa: PLC0415
    from startgate.errors import BusError  # noqa: PLC0415

    [number] = _args.vmids([vmid])
    cfg = load_config(ctx)
    g = guests.find(cfg.proxmox.config_dir, number, guests.rules(cfg.gates))
    try:
        state, bus_error = read_state(cfg), ""
    except BusError as exc:
        state, bus_error = ClusterState(), str(exc)
    if g is None and number not in state.held:
        raise _args.unknown_error([number], cfg.proxmox.config_dir)
    now = time.time()
    if as_json:
        typer.echo(d.dumps(why_json(cfg, number, g, state, now, bus_error=bus_error)))
    else:
        typer.echo(explain(cfg, number, g, state, now, bus_error=bus_error))
    h = state.held.get(number)
    held = h is not None and h.state != "releasing"
    raise typer.Exit(EXIT_NOT_OK if held or bus_error else EXIT_OK)


def register(app: typer.Typer) -> None:
    """Attach `why` to the root app."""
    app.command("why")(why)
