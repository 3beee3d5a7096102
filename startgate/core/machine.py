"""`step(state, event, now) -> (state, actions)`: the coordinator's whole decision logic.

Like h11's state machine: event-triggered transitions are looked up in a table (HANDLERS, one
handler per event type), then state-triggered ones run to a fixed point: the release pass looks at
every node whose held starts may now go, and each entry that changed gets its retained record
republished. Only the leader acts outside (starts, HA changes, publications, replies); a follower
probes and mirrors the leader's records so it is warm when it takes over.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from startgate.bus.messages import (
    Cleared,
    Command,
    CoordinatorStatus,
    GateHealth,
    GuestEvent,
    HeldStart,
    NodeEvent,
    NodeStatus,
    Reply,
    Ticket,
)
from startgate.bus.topics import HELD
from startgate.core import commands, health, intake, lifecycle, observe, release, ticks
from startgate.core.actions import Action, ClearRetained, Notify, Persist, Publish, Reconcile
from startgate.core.events import (
    BadCommand,
    BusConnected,
    Event,
    GuestMissing,
    GuestObserved,
    HaStateResult,
    LockAcquired,
    LockLost,
    NodeObserved,
    ProbeResult,
    ReconcileDone,
    Shutdown,
    Started,
    StartResult,
    TaskObserved,
    TaskResult,
    Tick,
)
from startgate.core.evolve import evolve
from startgate.core.model import State, Timers
from startgate.core.out import Out

Handler = Callable[[State, Any, Out], State]


def _ignore(state: State, _event: object, _out: Out) -> State:
    return state


def _on_started(state: State, _ev: Started, out: Out) -> State:
    state = dataclasses.replace(state, started=True)
    state = health.schedule_probes(state, out)
    text = ticks.status_text(state, ticks.counts(state))
    out.add(Notify(status=text, ready=True))
    return dataclasses.replace(state, status_text=text)


def _on_shutdown(state: State, _ev: Shutdown, out: Out) -> State:
    if state.leader and not state.stopping:
        out.add(Publish(ticks.status_message(state, ticks.counts(state), out, stopped=True), retain=True))
    out.add(Notify(status="stopping", stopping=True))
    out.add(Persist())
    return dataclasses.replace(state, stopping=True)


def _lose_track(state: State, out: Out, *, everything: bool = False) -> State:
    """Releases in flight are no longer ours to follow: look at those guests before acting on them.

    A new leader doubts every entry (`everything`): the former leader may have started any of them
    after its last publication, so nothing is released before an observation says it is still stopped.
    """
    doubtful = [e for e in state.held.values() if everything or e.state == "releasing"]
    for e in doubtful:
        state = lifecycle.move(
            state,
            e,
            "unsure",
            out,
            phase="",
            upid=None,
            issued_at=None,
            needs_check=True,
            check_after=out.now,
        )
    return state


def _on_lock_acquired(state: State, _ev: LockAcquired, out: Out) -> State:
    if state.leader:
        return state
    now = out.now
    out.log("info", f"{state.settings.node}: leading the cluster's coordinators")
    s = state.settings
    timers = Timers(
        reconcile_at=now + s.reconcile_interval_s,
        heartbeat_at=now + s.heartbeat_s,
        health_at=now + s.health_refresh_s,
        observe_at=now,
        status_dirty=False,
    )
    state = dataclasses.replace(state, leader=True, leader_since=now, timers=timers)
    state = _lose_track(state, out, everything=True)
    _republish(state, out)
    out.add(Reconcile("became leader"))
    out.touch_everything()
    out.wake_at(now)
    return state


def _on_lock_lost(state: State, ev: LockLost, out: Out) -> State:
    if not state.leader:
        return state
    out.log(
        "warning",
        f"{state.settings.node}: lost the cluster lock, following ({ev.reason or 'no reason given'})",
    )
    state = _lose_track(state, out)
    out.changed.clear()  # a follower publishes nothing
    return dataclasses.replace(state, leader=False, leader_since=None, timers=Timers())


def _republish(state: State, out: Out) -> None:
    """Every retained thing we own, again: a new leader, or a broker that may have lost it.

    And every held record that should no longer be there cleared again: a broker restored from
    its disk file brings back records cleared after its last save, a leader that died mid-release
    never cleared the starts that ended while we followed, and a clear made while the link was
    down was lost. Clearing an empty topic changes nothing, so each tombstone is cleared again.
    """
    if not release.acting(state):
        return
    out.changed.update(state.held)
    for vmid in state.tombstones:
        if vmid not in state.held:
            out.add(ClearRetained(HELD, vmid))
    health.publish_all(state, out)
    out.add(Publish(ticks.status_message(state, ticks.counts(state), out), retain=True))
    for t in state.tickets.values():
        if t.expires > out.now:
            out.add(Publish(ticks.ticket_message(t, out), retain=True))


def _on_bus_connected(state: State, _ev: BusConnected, out: Out) -> State:
    _republish(state, out)
    return state


def _on_reconcile_done(state: State, ev: ReconcileDone, out: Out) -> State:
    if not ev.ok:
        out.log("warning", f"reconciliation with the Proxmox API failed: {ev.error}")
    return state


def _on_guest_missing(state: State, ev: GuestMissing, out: Out) -> State:
    e = state.held.get(ev.vmid)
    state = dataclasses.replace(state, guests=state.guests.remove(ev.vmid))
    if e is None:
        return state
    out.log("warning", f"guest {ev.vmid} no longer exists; its held start is dropped")
    return lifecycle.clear(state, e, "dropped", out)


HANDLERS: dict[type, Handler] = {
    # bus messages (decoded)
    GuestEvent: intake.on_guest_event,
    HeldStart: intake.on_held_start,
    Cleared: intake.on_cleared,
    Ticket: intake.on_ticket,
    NodeEvent: intake.on_node_event,
    NodeStatus: intake.on_node_status,
    Command: commands.on_command,
    GateHealth: _ignore,  # our own (or a former leader's): our probes decide
    CoordinatorStatus: _ignore,  # the lock decides who leads, not this
    Reply: _ignore,
    # service life cycle
    Started: _on_started,
    Tick: ticks.on_tick,
    Shutdown: _on_shutdown,
    LockAcquired: _on_lock_acquired,
    LockLost: _on_lock_lost,
    BusConnected: _on_bus_connected,
    BadCommand: commands.on_bad_command,
    # probes and the API
    ProbeResult: health.on_probe_result,
    NodeObserved: observe.on_node_observed,
    GuestObserved: observe.on_guest_observed,
    GuestMissing: _on_guest_missing,
    TaskObserved: observe.on_task_observed,
    ReconcileDone: _on_reconcile_done,
    StartResult: release.on_start_result,
    TaskResult: release.on_task_result,
    HaStateResult: release.on_ha_result,
}


def step(state: State, event: Event, now: float) -> tuple[State, tuple[Action, ...]]:
    """Apply one event at time `now`; return the new state and the actions to carry out, in order."""
    handler = HANDLERS.get(type(event))
    if handler is None:
        raise TypeError(f"step: no handler for {type(event).__name__}")
    out = Out(now=now, instance=state.instance, seq=state.seq)
    before = state
    state = handler(state, event, out)
    state = release.release_pass(state, out)
    lifecycle.publish_changes(state, out)
    if out.changed and not state.timers.status_dirty:
        state = evolve(state, timers=evolve(state.timers, status_dirty=True))
    if _durable_changed(before, state) and not isinstance(event, Shutdown):
        out.add(Persist())
    return evolve(state, seq=out.seq), out.finish()


def _durable_changed(a: State, b: State) -> bool:
    return (
        a.held is not b.held
        or a.tickets is not b.tickets
        or a.tombstones is not b.tombstones
        or a.guests is not b.guests
        or a.nodes is not b.nodes
    )
