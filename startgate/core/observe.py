"""What the Proxmox API shows: nodes, guests and failed start tasks, and the held starts they reveal.

Some held starts never reach a hook (a container on LINSTOR storage fails in the storage plugin
before pre-start; a hook event may be lost while a broker is down), so reconciliation finds them:
an `onboot` member stopped on an online node since that node booted (once its startall is done),
a failed qmstart/vzstart of a member since its node booted, and an HA-managed member in `error`
or stuck in a started state with the guest stopped.
"""

from __future__ import annotations

import dataclasses

from startgate.core import lifecycle, release
from startgate.core.events import GuestObserved, NodeObserved, TaskObserved
from startgate.core.model import HA_TRYING, GuestInfo, HeldEntry, NodeInfo, State
from startgate.core.out import Out

START_TASKS = frozenset({"qmstart", "vzstart"})
BOOT_SLACK_S = 60.0  # boot times derived from uptime wobble by seconds; a new boot moves them by more


def on_node_observed(state: State, ev: NodeObserved, out: Out) -> State:
    """Update what we know of a node; a boot time that moved means it rebooted."""
    old = state.nodes.get(ev.node, NodeInfo())
    boot = old.boot_time
    if ev.boot_time is not None and (boot is None or abs(ev.boot_time - boot) > BOOT_SLACK_S):
        boot = ev.boot_time
    info = dataclasses.replace(old, online=ev.online, boot_time=boot, startall_done=ev.startall_done)
    if info == old:
        return state
    if info.online != old.online:
        out.touch(ev.node)
    return dataclasses.replace(state, nodes={**state.nodes, ev.node: info})


def _merge(old: GuestInfo | None, ev: GuestObserved, now: float) -> GuestInfo:
    last_ran = max((t for t in (ev.last_ran, old.last_ran if old else None) if t is not None), default=None)
    if ev.status == "running":
        last_ran = now
    trying = ev.ha_managed and ev.ha_state in HA_TRYING and ev.status == "stopped" and not ev.starting
    stuck_since = ((old.stuck_since if old else None) or now) if trying else None
    return GuestInfo(
        vmid=ev.vmid,
        node=ev.node,
        type=ev.type,
        status=ev.status,
        gates=ev.gates,
        onboot=ev.onboot,
        order=ev.order,
        up=ev.up,
        ha_managed=ev.ha_managed and ev.ha_state != "ignored",
        ha_state=ev.ha_state,
        lock=ev.lock,
        name=ev.name,
        last_ran=last_ran,
        starting=ev.starting,
        stuck_since=stuck_since,
    )


def on_guest_observed(state: State, ev: GuestObserved, out: Out) -> State:
    """Learn a guest's live state; clear, refresh or discover its held start."""
    now = out.now
    old = state.guests.get(ev.vmid)
    g = _merge(old, ev, now)
    if g != old:
        state = dataclasses.replace(state, guests=state.guests.set(ev.vmid, g))
        out.recheck.add(ev.vmid)
    e = state.held.get(ev.vmid)
    if e is not None:
        seen = ev.observed_at if ev.observed_at is not None else now
        return _refresh(state, e, g, seen, out)
    return _discover(state, g, out)


def _refresh(state: State, e: HeldEntry, g: GuestInfo, seen: float, out: Out) -> State:
    now = out.now
    if g.status == "running":
        return release.succeed(state, e, out)
    changes: dict[str, object] = {"ha": g.ha_managed, "ha_state": g.ha_state, "order": g.order, "up": g.up}
    if g.gates:
        changes["gates"] = g.gates
    if g.name:
        changes["name"] = g.name
    if e.state != "releasing":
        changes["node"] = g.node  # HA may have moved it
    if e.needs_check and seen >= e.check_after and not g.starting:
        changes["needs_check"] = False
    if g.starting and e.state != "releasing":
        busy = now + 2 * state.settings.observe_interval_s
        changes |= {"busy_until": busy, "needs_check": False}
        out.wake_at(busy)
    if e.state == "releasing" and e.phase == "ha-wait" and g.ha_state == "error":
        state = lifecycle.move(state, e, "update", out, **changes)
        return lifecycle.failed_attempt(state, state.held[e.vmid], "the HA resource went to error", out)
    return lifecycle.move(state, e, "update", out, **changes)


def _discover(state: State, g: GuestInfo, out: Out) -> State:
    if not g.gates or g.status != "stopped" or g.starting or g.lock:
        return state
    tomb = state.tombstones.get(g.vmid)
    if tomb is not None and tomb.dropped:
        return state  # an admin dropped it; leave it to them
    if g.ha_managed:
        return _discover_ha(state, g, out)
    node = state.nodes.get(g.node)
    if not g.onboot or node is None or not node.online or node.boot_time is None or not node.startall_done:
        return state
    boot = node.boot_time
    if (g.last_ran is not None and g.last_ran >= boot) or (tomb is not None and tomb.at >= boot):
        return state
    entry = lifecycle.entry_from_guest(g, out.now, "onboot guest not started since its node booted")
    return _found(state, entry, out)


def _discover_ha(state: State, g: GuestInfo, out: Out) -> State:
    now = out.now
    if g.ha_state == "error":
        return _found(state, lifecycle.entry_from_guest(g, now, "HA resource in error state"), out)
    if g.stuck_since is None:
        return state
    if now >= g.stuck_since + state.settings.ha_stuck_s:
        entry = lifecycle.entry_from_guest(g, now, "HA start stuck: started but not running", stuck=True)
        return _found(state, entry, out)
    out.wake_at(g.stuck_since + state.settings.ha_stuck_s)
    return state


def _found(state: State, entry: HeldEntry, out: Out) -> State:
    out.log(
        "info", f"guest {entry.vmid} on {entry.node}: held start found by reconciliation ({entry.reason})"
    )
    return lifecycle.put_new(state, entry, out)


def on_task_observed(state: State, ev: TaskObserved, out: Out) -> State:
    """A failed start task of a member since its node booted is a held start nobody reported."""
    if ev.ok or ev.type not in START_TASKS or ev.vmid in state.held:
        return state
    g = state.guests.get(ev.vmid)
    node = state.nodes.get(ev.node)
    if g is None or not g.gates or g.status != "stopped" or g.ha_managed or g.starting or g.lock:
        return state
    if node is None or node.boot_time is None or ev.endtime < node.boot_time:
        return state
    if g.last_ran is not None and g.last_ran >= ev.endtime:
        return state
    tomb = state.tombstones.get(ev.vmid)
    if tomb is not None and (tomb.dropped or tomb.at >= ev.endtime):
        return state
    reason = f"start failed: {ev.exitstatus}" if ev.exitstatus else "start task failed"
    return _found(state, lifecycle.entry_from_guest(g, out.now, reason[:2000]), out)
