"""Time-driven duties, run on every Tick: probes, timeouts, watching guests, heartbeats, reconciliation.

A Tick walks the whole queue once (the only O(n) step besides leadership changes), so it also
counts entries for the status, and works out when the next Tick is needed.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from startgate.bus.messages import CoordinatorStatus, Ticket
from startgate.core import health, lifecycle, release
from startgate.core.actions import Notify, ObserveGuest, Publish, Reconcile
from startgate.core.events import Tick
from startgate.core.model import HeldEntry, State, TicketRec
from startgate.core.out import Out


def counts(state: State) -> Mapping[str, int]:
    """Held entries by state (held, releasing, failed)."""
    return Counter(e.state for e in state.held.values())


def status_text(state: State, n: Mapping[str, int]) -> str:
    """The one-line systemd STATUS=."""
    role = "leader" if state.leader else "follower"
    gates = ", ".join(
        f"{name} {'healthy' if g.healthy else 'unhealthy'}" for name, g in sorted(state.gates.items())
    )
    held, releasing, failed = n.get("held", 0), n.get("releasing", 0), n.get("failed", 0)
    total = held + releasing + failed
    return f"{role}; gates: {gates}; held {total} ({releasing} releasing, {failed} failed)"


def status_message(
    state: State, n: Mapping[str, int], out: Out, *, stopped: bool = False
) -> CoordinatorStatus:
    """The retained `coordinator/status` message."""
    return CoordinatorStatus(
        event_id=out.event_id(),
        time=out.now,
        node=state.settings.node,
        since=state.leader_since if state.leader_since is not None else out.now,
        version=state.settings.version[:64],
        heartbeat_s=state.settings.heartbeat_s,
        held=n.get("held", 0),
        releasing=n.get("releasing", 0),
        failed=n.get("failed", 0),
        state="stopped" if stopped else "leader",
    )


def ticket_message(t: TicketRec, out: Out) -> Ticket:
    """The retained `ticket/<vmid>` message."""
    return Ticket(
        event_id=out.event_id(), time=t.time, vmid=t.vmid, expires=t.expires, requested_by=t.requested_by
    )


def on_tick(state: State, _ev: Tick, out: Out) -> State:
    """Everything that falls due with time."""
    state = health.schedule_probes(state, out)
    state, n = _scan(state, out)
    state = _expire(state, out)
    if release.acting(state):
        state = _leader_duties(state, n, out)
    text = status_text(state, n)
    if text != state.status_text and state.started:
        out.add(Notify(status=text))
        state = dataclasses.replace(state, status_text=text)
    out.touch_everything()
    return state


def _gate_timeouts(state: State, e: HeldEntry, out: Out) -> None:
    for name in e.gates:
        spec = state.settings.gate(name)
        if spec is not None and spec.timeout_s > 0 and spec.on_timeout == "start":
            at = e.first_held + spec.timeout_s
            if at > out.now:
                out.wake_at(at)


@dataclass(slots=True)
class _Scan:
    counts: Counter[str] = field(default_factory=Counter)
    timed_out: list[HeldEntry] = field(default_factory=list)
    idle: list[HeldEntry] = field(default_factory=list)
    watch: list[HeldEntry] = field(default_factory=list)


def _look(state: State, e: HeldEntry, scan: _Scan, out: Out) -> None:
    now = out.now
    scan.counts[e.state] += 1
    if e.state == "releasing":
        deadline = (e.issued_at or now) + state.settings.release_timeout_s
        if now >= deadline:
            scan.timed_out.append(e)
        else:
            out.wake_at(deadline)
        if e.phase == "ha-wait":
            scan.watch.append(e)
        return
    if e.busy_until is not None:
        if now >= e.busy_until:
            scan.idle.append(e)
        else:
            out.wake_at(e.busy_until)
    if e.needs_check:
        due = e.check_after + state.settings.observe_interval_s
        if now >= due:
            scan.watch.append(e)  # the reconcile asked for with the doubt had its chance first
        else:
            out.wake_at(due)
    if e.state == "held":
        if e.retry_at > now:
            out.wake_at(e.retry_at)
        _gate_timeouts(state, e, out)


def _node_up(state: State, node: str) -> bool:
    info = state.nodes.get(node)
    return info is None or info.online


def _scan(state: State, out: Out) -> tuple[State, Mapping[str, int]]:
    now = out.now
    s = state.settings
    acting = release.acting(state)
    scan = _Scan()
    for e in state.held.values():
        _look(state, e, scan, out)
    if acting:
        for e in scan.timed_out:
            error = f"no outcome within {s.release_timeout_s:g}s"
            if e.phase == "ha-wait":  # HA says started and nothing happens: reset it next time
                state = lifecycle.move(state, e, "progress", out, stuck=True)
            state = lifecycle.failed_attempt(
                state, state.held[e.vmid], error, out, unsure=e.phase in ("start", "task")
            )
    for e in scan.idle:  # whoever was starting it is done or gone: look before acting
        state = lifecycle.move(state, e, "update", out, busy_until=None, needs_check=True, check_after=now)
        scan.watch.append(e)
    # A guest of a node that is down cannot be looked at (pveproxy answers 595) and cannot run;
    # the node's boot brings a reconcile. HA guests are looked for: HA may have moved them.
    scan.watch = [e for e in scan.watch if e.ha or _node_up(state, e.node)]
    if acting and scan.watch:
        if now >= state.timers.observe_at:
            scan.watch.sort(key=lambda e: (e.phase != "ha-wait", e.check_after, e.vmid))
            for e in scan.watch[: s.max_observe]:
                out.add(ObserveGuest(e.vmid, e.node, e.type))
            timers = dataclasses.replace(state.timers, observe_at=now + s.observe_interval_s)
            state = dataclasses.replace(state, timers=timers)
        out.wake_at(state.timers.observe_at)
    return state, scan.counts


def _expire(state: State, out: Out) -> State:
    now = out.now
    for t in list(state.tickets.values()):
        if t.expires <= now:
            state = lifecycle.consume_ticket(state, t.vmid, out)
        else:
            out.wake_at(t.expires)
    return state


def _leader_duties(state: State, n: Mapping[str, int], out: Out) -> State:
    now = out.now
    s = state.settings
    t = state.timers
    if now >= t.heartbeat_at or t.status_dirty:
        out.add(Publish(status_message(state, n, out), retain=True))
        if now >= t.heartbeat_at:
            t = dataclasses.replace(t, heartbeat_at=now + s.heartbeat_s)
            state = _prune(state, out)
        t = dataclasses.replace(t, status_dirty=False)
    if now >= t.health_at:
        health.publish_all(state, out)
        t = dataclasses.replace(t, health_at=now + s.health_refresh_s)
    if now >= t.reconcile_at:
        out.add(Reconcile("periodic"))
        t = dataclasses.replace(t, reconcile_at=now + s.reconcile_interval_s)
    out.wake_at(min(t.heartbeat_at, t.health_at, t.reconcile_at))
    return dataclasses.replace(state, timers=t)


def _prune(state: State, out: Out) -> State:
    cutoff = out.now - state.settings.tombstone_ttl_s
    old = [vmid for vmid, tomb in state.tombstones.items() if tomb.at < cutoff]
    tombs = state.tombstones
    for vmid in old:
        tombs = tombs.remove(vmid)
    return dataclasses.replace(state, tombstones=tombs)
