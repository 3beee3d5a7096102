"""`startgate status` and `startgate queue`: the cluster's retained state, for people and scripts.

`status` exits 1 when anything needs attention (a gate unhealthy or without health, no or a
stale coordinator, a node offline or without its hook file, a broker not answering), so
`startgate status && ...` means "all is well". `queue` lists held starts and exits 0 whenever
it could read them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from startgate.commands import display as d
from startgate.commands._common import EXIT_NOT_OK, EXIT_OK, guarded, load_config

if TYPE_CHECKING:
    from startgate.bus import messages as m
    from startgate.commands._state import ClusterState
    from startgate.config import Config

STALE_BEATS = 3  # a coordinator silent for this many heartbeats is presumed gone
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


@dataclass(frozen=True)
class GateView:
    """One gate's line in `status`: its published health (if any) and the starts waiting on it."""

    name: str
    configured: bool
    health: m.GateHealth | None
    held: int


def gate_views(cfg: Config, state: ClusterState) -> list[GateView]:
    """Every configured gate, then any gate someone published health for that is not configured."""
    names = [g.name for g in cfg.gates] + sorted(set(state.gates) - {g.name for g in cfg.gates})
    configured = {g.name for g in cfg.gates}
    return [GateView(n, n in configured, state.gates.get(n), len(state.held_for(n))) for n in names]


def problems(cfg: Config, state: ClusterState, now: float) -> list[str]:
    """What needs attention, one sentence each (empty when all is well)."""
    out = [f"broker {b.url} did not answer: {b.error}" for b in state.brokers if not b.ready]
    c = state.coordinator
    if c is None:
        out.append("no coordinator has published its status: is startgate-coordinator running on any node?")
    elif c.state == "stopped":
        out.append(f"the coordinator on {c.node} stopped at {d.clock(c.time)} and no other has taken over")
    elif now - c.time > STALE_BEATS * c.heartbeat_s:
        out.append(
            f"the coordinator on {c.node} was last heard {d.age(now - c.time)} ago "
            f"(heartbeat {c.heartbeat_s:g}s): it may be down"
        )
    for g in gate_views(cfg, state):
        if not g.configured:
            continue
        if g.health is None:
            out.append(f"gate {g.name}: no health published yet")
        elif not g.health.healthy:
            out.append(f"gate {g.name} is unhealthy: {g.health.detail or 'no detail'}")
    for n in sorted(state.nodes.values(), key=lambda n: n.node):
        if n.state == "offline":
            out.append(f"node {n.node} is offline (its agent is not connected)")
        elif n.hook is not None and not (n.hook.exists and n.hook.executable):
            what = "missing" if not n.hook.exists else "not executable"
            out.append(f"node {n.node}: hook file {n.hook.path} is {what}")
    return out


def _gate_lines(g: GateView, cfg: Config, now: float) -> list[str]:
    h = g.health
    if h is None:
        return [f"  {g.name}  no health published  held starts: {g.held}"]
    word = "healthy" if h.healthy else "UNHEALTHY"
    latency = f" {h.latency_ms:.1f} ms" if h.latency_ms is not None else ""
    detail = f": {h.detail}" if h.detail else ""
    lines = [
        f"  {g.name}  {word} since {d.since(h.since, now)}",
        f"    last probe {d.since(h.checked_at, now)}{latency}{detail}",
        f"    target {h.target or _target(cfg, g.name)}  held starts: {g.held}",
    ]
    if h.nodes_ready is not None:
        lines.append(f"    nodes ready: {', '.join(h.nodes_ready) or 'none'}")
    if not g.configured:
        lines.append("    (not in this node's config)")
    return lines


def _target(cfg: Config, gate: str) -> str:
    try:
        check = cfg.gate(gate).check
    except KeyError:
        return "?"
    if check.kind == "linstor":
        return ", ".join(f"{u}/health" for u in check.urls)
    if check.kind == "http":
        return check.url
    return f"tcp {check.host}:{check.port}"


def _node_line(n: m.NodeStatus, now: float) -> str:
    if n.state == "offline":
        return f"  {n.node}  OFFLINE since {d.since(n.time, now)}"
    version = f"startgate {n.version}" if n.version else "version ?"
    if n.hook is None:
        hook = "hook not reported"
    elif n.hook.exists and n.hook.executable:
        hook = f"hook ok ({n.hook.path})"
    else:
        hook = f"hook {'NOT EXECUTABLE' if n.hook.exists else 'MISSING'} ({n.hook.path})"
    spool = f"  {n.spooled} spooled" if n.spooled else ""
    return f"  {n.node}  {n.state}  {version}  {hook}  since {d.since(n.time, now)}{spool}"


def render_status(cfg: Config, state: ClusterState, now: float) -> list[str]:
    """The human-readable status."""
    lines = []
    c = state.coordinator
    if c is None:
        lines.append("coordinator  none has published")
    else:
        lines.append(
            f"coordinator  {c.state} on {c.node} since {d.since(c.since, now)}, "
            f"last heard {d.age(now - c.time)} ago, version {c.version or '?'}"
        )
        lines.append(f"             held {c.held}, releasing {c.releasing}, failed {c.failed}")
    lines.append("gates")
    for g in gate_views(cfg, state):
        lines.extend(_gate_lines(g, cfg, now))
    lines.append("nodes")
    nodes = sorted(state.nodes.values(), key=lambda n: n.node)
    lines.extend(_node_line(n, now) for n in nodes)
    if not nodes:
        lines.append("  no node agent has published its status")
    lines.append(f"held starts  {len(state.held)}")
    lines.append("brokers")
    lines.extend(f"  {b.url}  {'ok' if b.ready else 'NO ANSWER: ' + b.error}" for b in state.brokers)
    found = problems(cfg, state, now)
    lines.append("problems" if found else "all is well")
    lines.extend(f"  - {p}" for p in found)
    return lines


def status_json(cfg: Config, state: ClusterState, now: float) -> dict[str, Any]:
    """The status as JSON: every message exactly as on the wire, plus the verdict."""
    found = problems(cfg, state, now)
    return {
        "ok": not found,
        "problems": found,
        "coordinator": d.dump(state.coordinator) if state.coordinator else None,
        "gates": [
            {
                "gate": g.name,
                "configured": g.configured,
                "health": d.dump(g.health) if g.health else None,
                "held": g.held,
            }
            for g in gate_views(cfg, state)
        ],
        "nodes": [d.dump(n) for n in sorted(state.nodes.values(), key=lambda n: n.node)],
        "held": len(state.held),
        "brokers": [{"url": b.url, "ready": b.ready, "error": b.error} for b in state.brokers],
    }


@guarded
def status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Gates, the leader coordinator, nodes and held starts; exit 1 when something needs attention."""
    from startgate.commands._bus import read_state  # noqa: PLC0415 - keep `startgate --help` light

    cfg = load_config(ctx)
    state = read_state(cfg)
    now = time.time()
    if as_json:
        typer.echo(d.dumps(status_json(cfg, state, now)))
    else:
        typer.echo("\n".join(render_status(cfg, state, now)))
    raise typer.Exit(EXIT_NOT_OK if problems(cfg, state, now) else EXIT_OK)


def queue_rows(state: ClusterState, now: float) -> list[list[str]]:
    """One row per held start, in release order."""
    return [
        [
            str(h.vmid),
            h.name or "-",
            h.type,
            h.node,
            "yes" if h.ha else "no",
            ",".join(h.gates),
            d.since(h.first_held, now),
            str(h.attempts),
            "-" if h.startup_order is None else str(h.startup_order),
            d.held_state(h),
        ]
        for h in state.held_sorted()
    ]


QUEUE_HEADERS = ("VMID", "NAME", "TYPE", "NODE", "HA", "GATES", "HELD SINCE", "TRIES", "ORDER", "STATE")


def render_queue(state: ClusterState, now: float) -> list[str]:
    """The held starts as a table (or a sentence when there are none)."""
    rows = queue_rows(state, now)
    if not rows:
        return ["no held starts"]
    return d.table(QUEUE_HEADERS, rows)


@guarded
def queue(
    ctx: typer.Context,
    as_json: JsonOpt = False,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="refresh on every change (Ctrl-C ends)")
    ] = False,
    updates: Annotated[
        int, typer.Option("--updates", min=0, hidden=True, help="with --watch: stop after N screens")
    ] = 0,
) -> None:
    """The held starts: VMID, name, type, node, HA, gates, since, attempts, startup order, state."""
    from startgate.commands._bus import read_state, watch_state  # noqa: PLC0415

    cfg = load_config(ctx)
    clear = watch and not as_json and sys.stdout.isatty() and os.environ.get("TERM") != "dumb"

    def show(state: ClusterState) -> None:
        now = time.time()
        if as_json:
            typer.echo(d.dumps([d.dump(h) for h in state.held_sorted()]))
            return
        if clear:
            typer.echo("\x1b[H\x1b[2J", nl=False)
        elif watch:
            typer.echo(f"-- {d.clock(now)}")
        typer.echo("\n".join(render_queue(state, now)))

    if not watch:
        show(read_state(cfg))
        raise typer.Exit(EXIT_OK)
    with contextlib.suppress(KeyboardInterrupt):
        watch_state(cfg, show, updates=updates)


def register(app: typer.Typer) -> None:
    """Attach `status` and `queue` to the root app."""
    app.command("status")(status)
    app.command("queue")(queue)
