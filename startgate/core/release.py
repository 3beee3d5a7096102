"""Releasing held starts: which may go, in what order, how many at once, and what each outcome means.

Per node, like pve-manager's startall: by `startup: order=` then VMID, one order level at a time
(the next level begins once the previous one has no start in flight and its `up=` delay has
passed), and at most `max_parallel_starts` in flight. A non-HA guest gets an API start whose task
is followed to its end; an HA-managed guest gets HA state changes instead (error -> disabled ->
started, otherwise started), never both.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from startgate.bus.messages import Ticket
from startgate.core import lifecycle
from startgate.core.actions import Action, FollowTask, Publish, SetHaState, StartGuest
from startgate.core.events import HaStateResult, StartResult, TaskResult
from startgate.core.model import HA_TRYING, GuestInfo, HeldEntry, Phase, State, TicketRec, order_key
from startgate.core.out import Out


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether an entry's gates let it go now, whether that needs a ticket, and if not, why."""

    ok: bool
    ticket: bool = False
    why: str = ""


def acting(state: State) -> bool:
    """Only a leader that is not shutting down changes anything outside."""
    return state.leader and not state.stopping


def gate_verdict(state: State, entry: HeldEntry, now: float) -> Verdict:
    """Every gate healthy (and the node ready where the gate asks), timed out with `start`, or forced."""
    if entry.forced:
        return Verdict(ok=True, ticket=True)
    ticket = False
    for name in entry.gates:
        spec = state.settings.gate(name)
        if spec is None:
            return Verdict(ok=False, why=f"gate {name!r} is not in the coordinator's config")
        g = state.gates[name]
        if g.healthy and (not spec.node_ready or entry.node in g.nodes_online):
            continue
        if spec.timeout_s > 0 and spec.on_timeout == "start" and now >= entry.first_held + spec.timeout_s:
            ticket = True
            continue
        why = f"gate {name} unhealthy" if not g.healthy else f"gate {name}: node {entry.node} not ready"
        return Verdict(ok=False, why=why)
    return Verdict(ok=True, ticket=ticket)


def is_candidate(state: State, entry: HeldEntry, now: float) -> bool:
    """Whether `entry` may be released now, slots and order aside."""
    if entry.state != "held" or entry.needs_check or entry.retry_at > now:
        return False
    if entry.busy_until is not None and entry.busy_until > now:
        return False
    node = state.nodes.get(entry.node)
    if node is not None and not node.online:
        return False
    guest = state.guests.get(entry.vmid)
    if guest is not None and (guest.status == "running" or guest.lock):
        return False
    return gate_verdict(state, entry, now).ok


def release_pass(state: State, out: Out) -> State:
    """Release what may go on every node this step touched (or on all nodes)."""
    if not acting(state):
        return state
    now = out.now
    if out.all_nodes:
        nodes = set(state.order_index)
    else:
        nodes = set(out.nodes)
        for vmid in out.changed | out.recheck:
            e = state.held.get(vmid)
            if e is not None and is_candidate(state, e, now):
                nodes.add(e.node)
    for node in sorted(nodes):
        state = _release_node(state, node, out)
    return state


def _release_node(state: State, node: str, out: Out) -> State:
    now = out.now
    inflight = state.inflight.get(node, frozenset())
    slots = state.settings.max_parallel_starts - len(inflight)
    if slots <= 0:
        return state
    wave: int | None = None
    if inflight:
        wave = min(order_key(state.held[v].order) for v in inflight)
    else:
        pacing = state.pacing.get(node)
        if pacing is not None and now < pacing.not_before:
            out.wake_at(pacing.not_before)
            return state
    for key, vmid in state.order_index.get(node, ()):
        if wave is not None and key > wave:
            break
        e = state.held[vmid]
        if not is_candidate(state, e, now):
            continue
        if wave is None:
            wave = key
        elif key != wave:
            break  # a lower level became ready while a higher one is in flight: it goes next
        state = issue(state, e, out)
        slots -= 1
        if slots == 0:
            break
    return state


def ha_plan(entry: HeldEntry) -> tuple[Phase, tuple[Action, ...]]:
    """HA-managed: error (or stuck) -> disabled first; already trying -> just wait; else started."""
    if entry.ha_state == "error" or entry.stuck:
        return "ha-disable", (SetHaState(entry.vmid, entry.type, "disabled"),)
    if entry.ha_state in HA_TRYING:
        return "ha-wait", ()
    return "ha-start", (SetHaState(entry.vmid, entry.type, "started"),)


def issue(state: State, entry: HeldEntry, out: Out) -> State:
    """Release one entry now: a ticket if its gates are passed by force or timeout, then the start."""
    now = out.now
    verdict = gate_verdict(state, entry, now)
    if verdict.ticket:
        by = "coordinator (forced)" if entry.forced else "coordinator (gate timeout, on_timeout=start)"
        state = ensure_ticket(state, entry.vmid, by, out)
    actions: tuple[Action, ...]
    if entry.ha:
        phase, actions = ha_plan(entry)
    else:
        phase, actions = "start", (StartGuest(entry.vmid, entry.node, entry.type),)
    reason = "released" + (" with a ticket" if verdict.ticket else "")
    state = lifecycle.move(state, entry, "release", out, phase=phase, issued_at=now, upid=None, reason=reason)
    for a in actions:
        out.add(a)
    out.wake_at(now + state.settings.release_timeout_s)
    if phase == "ha-wait":
        out.wake_at(now + state.settings.observe_interval_s)
    return state


def ensure_ticket(state: State, vmid: int, requested_by: str, out: Out) -> State:
    """Publish a release ticket for `vmid` unless a valid one is out already."""
    now = out.now
    current = state.tickets.get(vmid)
    if current is not None and current.expires > now:
        return state
    rec = TicketRec(vmid=vmid, expires=now + state.settings.ticket_ttl_s, requested_by=requested_by, time=now)
    msg = Ticket(
        event_id=out.event_id(), time=now, vmid=vmid, expires=rec.expires, requested_by=requested_by[:256]
    )
    out.add(Publish(msg, retain=True))
    out.wake_at(rec.expires)
    return dataclasses.replace(state, tickets=state.tickets.set(vmid, rec))


def succeed(state: State, entry: HeldEntry, out: Out) -> State:
    """The guest runs: remember that, and clear its entry."""
    g = state.guests.get(entry.vmid) or GuestInfo(vmid=entry.vmid, node=entry.node, type=entry.type)
    last_ran = max(g.last_ran or 0.0, out.now)
    g = dataclasses.replace(g, node=entry.node, status="running", last_ran=last_ran, stuck_since=None)
    state = dataclasses.replace(state, guests=state.guests.set(entry.vmid, g))
    out.log("info", f"guest {entry.vmid} on {entry.node}: running, held start cleared")
    return lifecycle.clear(state, entry, "started", out)


def _in_phase(state: State, vmid: int, *phases: Phase) -> HeldEntry | None:
    e = state.held.get(vmid)
    if e is None or e.state != "releasing" or e.phase not in phases:
        return None
    return e


def _api_error(what: str, error: str, status: int, privilege: str) -> str:
    if status == 403:
        return f"{what}: permission denied (403; the token needs {privilege}): {error}"
    return f"{what}: {error} (HTTP {status})" if status else f"{what}: {error}"


def on_start_result(state: State, ev: StartResult, out: Out) -> State:
    """The start call answered: follow its task, or count a failed attempt."""
    e = _in_phase(state, ev.vmid, "start")
    if e is None:
        out.log("debug", f"guest {ev.vmid}: start result for no start in flight, ignored")
        return state
    if ev.already_running:
        return succeed(state, e, out)
    if ev.upid:
        state = lifecycle.move(state, e, "progress", out, phase="task", upid=ev.upid)
        out.add(FollowTask(e.vmid, e.node, ev.upid))
        return state
    error = _api_error("start", ev.error or "no answer", ev.status, "VM.PowerMgmt")
    return lifecycle.failed_attempt(state, e, error, out, unsure=ev.status == 0)


def on_task_result(state: State, ev: TaskResult, out: Out) -> State:
    """A followed start task ended."""
    e = _in_phase(state, ev.vmid, "task")
    if e is None or e.upid != ev.upid:
        out.log("debug", f"guest {ev.vmid}: result of task {ev.upid} nobody follows, ignored")
        return state
    if ev.ok:
        return succeed(state, e, out)
    return lifecycle.failed_attempt(state, e, f"start task failed: {ev.exitstatus or 'unknown error'}", out)


def on_ha_result(state: State, ev: HaStateResult, out: Out) -> State:
    """An HA state change answered: go on to `started`, then wait for the LRM."""
    expected: Phase = "ha-disable" if ev.state == "disabled" else "ha-start"
    e = _in_phase(state, ev.vmid, expected)
    if e is None:
        out.log("debug", f"guest {ev.vmid}: HA result {ev.state} for no HA step in flight, ignored")
        return state
    if not ev.ok:
        error = _api_error(f"HA state {ev.state}", ev.error or "no answer", ev.status, "Sys.Console")
        return lifecycle.failed_attempt(state, e, error, out)
    if ev.state == "disabled":
        verdict = gate_verdict(state, e, out.now)
        if not verdict.ok:  # went unhealthy meanwhile: stop here, `started` comes with the next release
            return lifecycle.move(
                state, e, "pause", out, phase="", issued_at=None, ha_state="disabled", stuck=False
            )
        state = lifecycle.move(state, e, "progress", out, phase="ha-start", ha_state="disabled", stuck=False)
        out.add(SetHaState(e.vmid, e.type, "started"))
        return state
    state = lifecycle.move(state, e, "progress", out, phase="ha-wait", ha_state="started")
    out.wake_at(out.now + state.settings.observe_interval_s)
    return state
