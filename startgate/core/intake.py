"""What the bus tells the core: hook refusals and lifecycle events, retained records, node events.

Events are hints and the API is the truth (design.md), so everything here is idempotent: a
duplicate, a stale retained record replayed by a broker that was down, or our own publication
coming back must leave the state as it was.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from startgate.bus.messages import Cleared, GuestEvent, HeldStart, NodeEvent, NodeStatus, Ticket
from startgate.bus.topics import HELD, TICKET
from startgate.core import lifecycle, release
from startgate.core.actions import ClearRetained, Reconcile
from startgate.core.evolve import evolve
from startgate.core.model import GuestInfo, GuestType, HeldEntry, NodeInfo, State, TicketRec, Tombstone
from startgate.core.out import Out


def _guest(state: State, vmid: int, node: str, type_: GuestType, **changes: object) -> GuestInfo:
    """What is known of guest `vmid`, with `node`, `type_` and `changes` (one copy at most)."""
    g = state.guests.get(vmid)
    if g is None:
        return GuestInfo(vmid=vmid, node=node, type=type_, **changes)  # type: ignore[arg-type]
    changes["node"], changes["type"] = node, type_
    # A hook repeats what we know with every event: most events change nothing.
    if all(getattr(g, k) == v for k, v in changes.items()):
        return g
    return evolve(g, **changes)


def _set_guest(state: State, g: GuestInfo) -> State:
    if state.guests.get(g.vmid) == g:
        return state
    return evolve(state, guests=state.guests.set(g.vmid, g))


def hook_hold(
    state: State,
    out: Out,
    *,
    vmid: int,
    node: str,
    type_: GuestType,
    gates: Sequence[str],
    ha: bool | None,
    reason: str,
    time: float,
    attempts: int | None = None,
    first_held: float | None = None,
    name: str | None = None,
    order: int | None = None,
) -> State:
    """A start was refused (by the hook): record it, or refresh the record we have."""
    known = state.guests.get(vmid)
    gate_names = tuple(gates) or (known.gates if known else ())
    if not gate_names:
        out.log("warning", f"guest {vmid}: held start names no gate, ignored")
        return state
    is_ha = ha if ha is not None else (known.ha_managed if known else False)
    e = state.held.get(vmid)
    if e is None:
        entry = HeldEntry(
            vmid=vmid,
            node=node,
            type=type_,
            gates=gate_names,
            first_held=min(first_held or time, time),
            last_held=time,
            attempts=attempts or 1,
            ha=is_ha,
            ha_state=known.ha_state if known else None,
            source="hook",
            reason=reason,
            name=name or (known.name if known else None),
            order=order if order is not None else (known.order if known else None),
            up=known.up if known else None,
        )
        out.log("info", f"guest {vmid} on {node}: start held ({reason or ', '.join(gate_names)})")
        return lifecycle.put_new(state, entry, out)
    newer = time > e.last_held
    changes: dict[str, object] = {
        "node": node if e.state != "releasing" else e.node,
        "type": type_,
        "gates": gate_names,
        "ha": is_ha,
        "last_held": max(e.last_held, time),
        "attempts": max(e.attempts + (1 if newer and attempts is None else 0), attempts or 0),
        "name": name or e.name,
        "order": order if order is not None else e.order,
    }
    if newer:
        changes["reason"] = reason
    if e.state == "failed" and newer:
        changes |= {"tries": 0, "retry_at": 0.0, "needs_check": False}
        return lifecycle.move(state, e, "refused", out, **changes)
    if e.state == "failed":
        return lifecycle.move(state, e, "update", out, **changes)
    return lifecycle.move(state, e, "refused", out, **changes)


def on_guest_event(state: State, ev: GuestEvent, out: Out) -> State:
    """A hook's lifecycle event: hold, allow, started, stopped."""
    now = out.now
    known: dict[str, object] = {}
    if ev.gates:
        known["gates"] = tuple(ev.gates)
    if ev.ha is not None:
        known["ha_managed"] = ev.ha
    e = state.held.get(ev.vmid)
    if ev.phase == "pre-start" and ev.decision == "hold":
        state = _set_guest(state, _guest(state, ev.vmid, ev.node, ev.type, status="stopped", **known))
        return hook_hold(
            state,
            out,
            vmid=ev.vmid,
            node=ev.node,
            type_=ev.type,
            gates=ev.gates,
            ha=ev.ha,
            reason=ev.reason,
            time=ev.time,
        )
    g = _guest(state, ev.vmid, ev.node, ev.type, **known)
    if ev.phase == "pre-start":  # allowed: someone is starting it (maybe with our ticket)
        state = lifecycle.consume_ticket(_set_guest(state, g), ev.vmid, out)
        if e is not None and e.state != "releasing":
            busy = now + 2 * state.settings.observe_interval_s
            state = lifecycle.move(state, e, "update", out, busy_until=busy, node=ev.node)
            out.wake_at(busy)
        return state
    if ev.phase == "post-start":
        g = dataclasses.replace(
            g, status="running", last_ran=max(ev.time, g.last_ran or 0.0), stuck_since=None
        )
        state = lifecycle.consume_ticket(_set_guest(state, g), ev.vmid, out)
        e = state.held.get(ev.vmid)
        return release.succeed(state, e, out) if e is not None else state
    status = "stopped" if ev.phase == "post-stop" else g.status
    return _set_guest(state, dataclasses.replace(g, status=status, last_ran=max(ev.time, g.last_ran or 0.0)))


def _stale(state: State, msg: HeldStart) -> bool:
    tomb = state.tombstones.get(msg.vmid)
    if tomb is not None and msg.last_held <= tomb.at:
        return True
    g = state.guests.get(msg.vmid)
    return g is not None and g.status == "running" and (g.last_ran or 0.0) >= msg.last_held


def _remember_ended(state: State, msg: HeldStart) -> State:
    if msg.vmid in state.tombstones:
        return state
    g = state.guests.get(msg.vmid)
    # The guest's run, not now: a hold made after it ran must not look stale.
    at = max(msg.last_held, g.last_ran or 0.0) if g is not None else msg.last_held
    return dataclasses.replace(state, tombstones=state.tombstones.set(msg.vmid, Tombstone(at=at)))


def on_held_start(state: State, msg: HeldStart, out: Out) -> State:
    """A `held/<vmid>` record: a hook's refusal, or a coordinator's (ours echoed, or a former leader's)."""
    known = msg.vmid in state.held
    if _stale(state, msg):
        if not known:
            if state.leader:
                out.add(ClearRetained(HELD, msg.vmid))  # a broker that was down still had it
            # Remembered as ended, so it is cleared (again) when we lead or the broker comes back:
            # a follower restarted after the leader died mid-release is the one left to clear it.
            state = _remember_ended(state, msg)
        return state
    if msg.source == "hook":
        return hook_hold(
            state,
            out,
            vmid=msg.vmid,
            node=msg.node,
            type_=msg.type,
            gates=msg.gates,
            ha=msg.ha,
            reason=msg.reason,
            time=msg.last_held,
            attempts=msg.attempts,
            first_held=msg.first_held,
            name=msg.name,
            order=msg.startup_order,
        )
    if state.leader:
        if known:
            return state  # our own record coming back
        entry = lifecycle.entry_from_record(msg, lost_track=True, now=out.now)
        out.log("info", f"guest {msg.vmid}: held start adopted from the bus ({msg.state})")
        return lifecycle.put_new(state, entry, out)
    # A follower mirrors the leader's records, so it is warm when it takes over.
    entry = lifecycle.entry_from_record(msg, lost_track=False, now=out.now)
    return lifecycle.store(state, msg.vmid, entry)


def on_cleared(state: State, msg: Cleared, out: Out) -> State:
    """An empty retained payload: a follower mirrors a cleared record; tickets are forgotten."""
    key = msg.ref.key
    if not isinstance(key, int):
        return state
    if msg.ref.kind == TICKET and key in state.tickets:
        return dataclasses.replace(state, tickets=state.tickets.remove(key))
    if msg.ref.kind == HELD and not state.leader and key in state.held:
        tomb = state.tombstones.set(key, Tombstone(at=out.now))
        return dataclasses.replace(lifecycle.store(state, key, None), tombstones=tomb)
    return state


def on_ticket(state: State, msg: Ticket, out: Out) -> State:
    """A retained ticket (ours, or a former leader's): keep track of it until used or expired."""
    if msg.vmid in state.tickets:
        return state
    if msg.expires <= out.now:
        if state.leader:
            out.add(ClearRetained(TICKET, msg.vmid))
        return state
    rec = TicketRec(vmid=msg.vmid, expires=msg.expires, requested_by=msg.requested_by, time=msg.time)
    out.wake_at(msg.expires)
    return dataclasses.replace(state, tickets=state.tickets.set(msg.vmid, rec))


def _set_node(state: State, name: str, info: NodeInfo, out: Out) -> State:
    old = state.nodes.get(name)
    if old == info:
        return state
    if old is None or old.online != info.online:
        out.touch(name)
    return dataclasses.replace(state, nodes={**state.nodes, name: info})


def on_node_event(state: State, ev: NodeEvent, out: Out) -> State:
    """A node booted (reconcile it once its startall is done) or is shutting down."""
    old = state.nodes.get(ev.node, NodeInfo())
    if ev.kind == "shutdown":
        return _set_node(state, ev.node, dataclasses.replace(old, online=False), out)
    info = NodeInfo(online=True, boot_time=ev.time, boot_id=ev.boot_id, startall_done=False)
    state = _set_node(state, ev.node, info, out)
    if release.acting(state):
        out.add(Reconcile(f"node {ev.node} booted", nodes=(ev.node,)))
    return state


def on_node_status(state: State, msg: NodeStatus, out: Out) -> State:
    """A node agent's availability (its Last Will says offline); a new boot id means it rebooted."""
    old = state.nodes.get(msg.node, NodeInfo())
    rebooted = bool(msg.boot_id) and bool(old.boot_id) and msg.boot_id != old.boot_id
    info = dataclasses.replace(old, online=msg.state == "online", boot_id=msg.boot_id or old.boot_id)
    if rebooted:
        info = dataclasses.replace(info, startall_done=False)
    state = _set_node(state, msg.node, info, out)
    if rebooted and release.acting(state):
        out.add(Reconcile(f"node {msg.node} has a new boot id", nodes=(msg.node,)))
    return state
