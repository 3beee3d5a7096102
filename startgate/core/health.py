"""Gate health: when to probe, and the hysteresis that turns probe results into healthy/unhealthy.

A gate is healthy after `healthy_after` passes in a row and unhealthy at the first failure (a
probe that never answers counts as one). For linstor gates the probe also reports which nodes'
satellites are ONLINE; a guest's node is ready only when it is in that set.
"""

from __future__ import annotations

import dataclasses

from startgate.bus.messages import GateHealth
from startgate.core import lifecycle
from startgate.core.actions import ProbeGate, Publish
from startgate.core.events import ProbeResult
from startgate.core.model import GateSpec, GateState, State
from startgate.core.out import Out


def schedule_probes(state: State, out: Out) -> State:
    """Ask for every probe that is due; fail a probe that has not answered for `probe_stall_s`."""
    now = out.now
    stall = state.settings.probe_stall_s
    gates = dict(state.gates)
    for spec in state.settings.gates:
        g = gates[spec.name]
        if g.probing_since is not None:
            if now >= g.probing_since + stall:  # the very sum the Wake asked for (float rounding)
                state = dataclasses.replace(state, gates=gates)
                result = ProbeResult(
                    gate=spec.name, ok=False, detail=f"probe did not answer within {stall:g}s"
                )
                state = on_probe_result(state, result, out)
                gates = dict(state.gates)
            else:
                out.wake_at(g.probing_since + stall)
                continue
            g = gates[spec.name]
        if now >= g.next_probe_at:
            out.add(ProbeGate(spec.name))
            gates[spec.name] = dataclasses.replace(g, probing_since=now, next_probe_at=now + spec.interval_s)
            out.wake_at(now + stall)
        else:
            out.wake_at(g.next_probe_at)
    return dataclasses.replace(state, gates=gates)


def observe(spec: GateSpec, g: GateState, ev: ProbeResult, now: float) -> GateState:
    """The hysteresis: one probe result applied to a gate's state."""
    passes = g.passes + 1 if ev.ok else 0
    healthy = ev.ok and (g.healthy or passes >= spec.healthy_after)
    nodes = (ev.nodes_online or frozenset()) if ev.ok else frozenset()
    since = now if (healthy != g.healthy or g.checked_at is None) else g.since
    if ev.ok and spec.node_ready and ev.nodes_online is None:
        detail = ev.detail or "health ok, but the satellites' state is unknown: no node counts as ready"
    else:
        detail = ev.detail or ("ok" if ev.ok else "check failed")
    return dataclasses.replace(
        g,
        healthy=healthy,
        passes=passes,
        since=since,
        checked_at=now,
        latency_ms=ev.latency_ms,
        detail=detail,
        target=ev.target or g.target,
        nodes_online=nodes,
        probing_since=None,
    )


def on_probe_result(state: State, ev: ProbeResult, out: Out) -> State:
    """Apply a probe result; a change of health or of ready nodes is published and re-examines the queue."""
    spec = state.settings.gate(ev.gate)
    if spec is None:
        out.log("warning", f"probe result for unknown gate {ev.gate!r}, ignored")
        return state
    now = out.now
    old = state.gates[ev.gate]
    new = observe(spec, old, ev, now)
    state = dataclasses.replace(state, gates={**state.gates, ev.gate: new})
    out.wake_at(max(new.next_probe_at, now))
    if new.healthy != old.healthy or (new.healthy and new.nodes_online != old.nodes_online):
        out.touch_everything()
        if new.healthy != old.healthy:
            word = "healthy" if new.healthy else "unhealthy"
            out.log("info" if new.healthy else "warning", f"gate {ev.gate}: {word} ({new.detail})")
        if new.healthy and not old.healthy:
            state = _retry_failed(state, ev.gate, out)
        if state.leader:
            out.add(Publish(health_message(state, ev.gate, out.event_id()), retain=True))
    return state


def _retry_failed(state: State, gate: str, out: Out) -> State:
    """Starts given up while `gate` flapped get fresh retries now that it is healthy again.

    A flapping controller (or an API that timed out meanwhile) uses up `start_retries` in
    failures that were the gate's, not the guest's; without this they would wait for an admin.
    A guest that fails for its own reasons fails again, at most once per recovery of its gate.
    """
    for e in list(state.held.values()):
        if e.state == "failed" and gate in e.gates:
            out.log(
                "info", f"guest {e.vmid}: gate {gate} is healthy again; its given-up start gets new tries"
            )
            state = lifecycle.move(
                state, e, "gate-healthy", out, tries=0, retry_at=0.0, needs_check=True, check_after=out.now
            )
    return state


def health_message(state: State, name: str, event_id: str) -> GateHealth:
    """The retained `gate/<name>/health` message."""
    g = state.gates[name]
    spec = state.settings.gate(name)
    return GateHealth(
        event_id=event_id,
        gate=name,
        healthy=g.healthy,
        since=g.since,
        checked_at=g.checked_at if g.checked_at is not None else g.since,
        latency_ms=g.latency_ms,
        detail=g.detail[:2000],
        target=g.target[:2000],
        passes=g.passes,
        nodes_ready=sorted(g.nodes_online) if spec is not None and spec.node_ready else None,
        published_by=state.settings.node[:63],
    )


def publish_all(state: State, out: Out) -> None:
    """Publish every gate's health (heartbeat, new leader, broker back)."""
    for spec in state.settings.gates:
        out.add(Publish(health_message(state, spec.name, out.event_id()), retain=True))
