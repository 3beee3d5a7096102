"""The held queue's life cycle, as a table of allowed transitions plus the few helpers that apply them.

An entry is `held` (waiting for its gates, or for its retry backoff), `releasing` (a start or an
HA change is in flight) or `failed` (retries used up; visible in the CLI until a command or a new
refusal brings it back). It leaves the queue (CLEARED) when its guest runs or an admin drops it.
Every change goes through `move`, which refuses a transition the table does not list.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

from startgate.bus.messages import HeldStart
from startgate.bus.topics import HELD, TICKET
from startgate.core.actions import ClearRetained, ObserveGuest, Publish
from startgate.core.evolve import evolve
from startgate.core.model import EntryState, GuestInfo, HeldEntry, NodePacing, State, Tombstone, order_key
from startgate.core.out import Out
from startgate.core.pmap import PMap

CLEARED: Final = "cleared"
Target = EntryState | Literal["cleared"]
Trigger = Literal[
    "refused",
    "update",
    "release",
    "progress",
    "pause",
    "retry",
    "give-up",
    "unsure",
    "command",
    "started",
    "dropped",
    "gate-healthy",
]

_ALL: tuple[EntryState, ...] = ("held", "releasing", "failed")


def _table() -> Mapping[tuple[EntryState, Trigger], Target]:
    t: dict[tuple[EntryState, Trigger], Target] = {
        ("held", "release"): "releasing",  # gates passable, a slot free, its order's turn
        ("releasing", "progress"): "releasing",  # start accepted, task followed, HA step done
        ("releasing", "retry"): "held",  # the attempt failed; backoff, then again
        ("releasing", "give-up"): "failed",  # start_retries used up
        ("releasing", "unsure"): "held",  # lost track (no answer, restart, new leader): look first
        ("releasing", "pause"): "held",  # a gate failed between two steps of an HA release
        ("held", "unsure"): "held",
        ("failed", "unsure"): "failed",
        ("held", "refused"): "held",  # refused again: refresh the record
        ("releasing", "refused"): "releasing",  # our own start refused: its task result decides
        ("failed", "refused"): "held",  # someone tried again: so do we, with fresh retries
        ("held", "command"): "held",  # release (now / --force)
        ("failed", "command"): "held",
        ("failed", "gate-healthy"): "held",  # its gate failed and came back: the failures were likely its
        ("releasing", "command"): "releasing",
    }
    for s in _ALL:
        t[(s, "update")] = s  # facts about the guest changed (node, HA state, order, gates)
        t[(s, "started")] = CLEARED  # the guest runs: nothing left to release
        t[(s, "dropped")] = CLEARED  # an admin said forget it
    return t


TRANSITIONS: Final = _table()


class TransitionError(ValueError):
    """A handler tried a transition the table does not allow (a bug in the core)."""


def target(entry: HeldEntry, trigger: Trigger) -> Target:
    """Where `trigger` takes `entry`, per TRANSITIONS."""
    try:
        return TRANSITIONS[(entry.state, trigger)]
    except KeyError:
        raise TransitionError(
            f"held start {entry.vmid}: no transition {entry.state} --{trigger}-->"
        ) from None


def _key(e: HeldEntry) -> tuple[int, int]:
    return (order_key(e.order), e.vmid)


def store(state: State, vmid: int, new: HeldEntry | None) -> State:
    """Put (or with None, remove) one entry, keeping the per-node indexes in step."""
    old = state.held.get(vmid)
    held = state.held.remove(vmid) if new is None else state.held.set(vmid, new)
    index = state.order_index
    if old is None or new is None or old.node != new.node or old.order != new.order:
        index = dict(index)
        if old is not None:
            rest = tuple(k for k in index.get(old.node, ()) if k[1] != vmid)
            if rest:
                index[old.node] = rest
            else:
                index.pop(old.node, None)
        if new is not None:
            keys = list(index.get(new.node, ()))
            bisect.insort(keys, _key(new))
            index[new.node] = tuple(keys)
    inflight = state.inflight
    was = old is not None and old.state == "releasing"
    now = new is not None and new.state == "releasing"
    if was != now or (was and now and old is not None and new is not None and old.node != new.node):
        inflight = dict(inflight)
        if old is not None and was:
            left = inflight.get(old.node, frozenset()) - {vmid}
            if left:
                inflight[old.node] = left
            else:
                inflight.pop(old.node, None)
        if new is not None and now:
            inflight[new.node] = inflight.get(new.node, frozenset()) | {vmid}
    return evolve(state, held=held, order_index=index, inflight=inflight)


def with_entries(state: State, entries: Iterable[HeldEntry]) -> State:
    """`state` holding exactly `entries` (restoring a state file), indexes built in one go."""
    held = PMap((e.vmid, e) for e in entries)
    index: dict[str, list[tuple[int, int]]] = {}
    inflight: dict[str, set[int]] = {}
    for e in held.values():
        index.setdefault(e.node, []).append(_key(e))
        if e.state == "releasing":
            inflight.setdefault(e.node, set()).add(e.vmid)
    return dataclasses.replace(
        state,
        held=held,
        order_index={n: tuple(sorted(keys)) for n, keys in index.items()},
        inflight={n: frozenset(v) for n, v in inflight.items()},
    )


def move(state: State, entry: HeldEntry, trigger: Trigger, out: Out, **changes: Any) -> State:
    """Apply `trigger` to `entry` (with field `changes`), store it and note what must follow."""
    to = target(entry, trigger)
    if to == CLEARED:
        raise TransitionError(f"held start {entry.vmid}: use clear() for {trigger}")
    new = evolve(entry, state=to, **changes)
    if new == entry:
        return state
    out.changed.add(entry.vmid)  # the release pass also looks at its node if it became a candidate
    if entry.state == "releasing" and (new.state != "releasing" or new.node != entry.node):
        out.touch(entry.node)  # a slot on its node is free
    return store(state, entry.vmid, new)


def put_new(state: State, entry: HeldEntry, out: Out) -> State:
    """Add a new entry (a refusal or a discovery)."""
    out.changed.add(entry.vmid)
    return store(state, entry.vmid, entry)


def clear(state: State, entry: HeldEntry, trigger: Literal["started", "dropped"], out: Out) -> State:
    """Remove `entry` from the queue; a started guest also lets its node's next order level wait `up`."""
    if target(entry, trigger) != CLEARED:
        raise TransitionError(f"held start {entry.vmid}: {trigger} does not clear")
    now = out.now
    tomb = state.tombstones.set(entry.vmid, Tombstone(at=now, dropped=trigger == "dropped"))
    pacing = state.pacing
    if trigger == "started" and entry.state == "releasing" and entry.up:
        p = pacing.get(entry.node, NodePacing())
        pacing = {**pacing, entry.node: dataclasses.replace(p, not_before=max(p.not_before, now + entry.up))}
        out.wake_at(now + entry.up)
    out.changed.add(entry.vmid)
    if entry.state == "releasing":
        out.touch(entry.node)
    state = dataclasses.replace(store(state, entry.vmid, None), tombstones=tomb, pacing=pacing)
    return consume_ticket(state, entry.vmid, out)


def consume_ticket(state: State, vmid: int, out: Out) -> State:
    """Forget a release ticket (used, or no longer needed) and clear its retained topic."""
    if vmid not in state.tickets:
        return state
    if state.leader:
        out.add(ClearRetained(TICKET, vmid))
    return dataclasses.replace(state, tickets=state.tickets.remove(vmid))


def backoff(state: State, tries: int) -> float:
    """Seconds to wait before release attempt `tries + 1` (exponential, capped)."""
    s = state.settings
    return float(min(s.retry_backoff_s * 2 ** max(tries - 1, 0), s.max_backoff_s))


def failed_attempt(state: State, entry: HeldEntry, error: str, out: Out, *, unsure: bool = False) -> State:
    """A release attempt failed: retry after a backoff, or give up after `start_retries` retries.

    `unsure`: no answer came, so the start may have happened; look at the guest before retrying.
    """
    tries = entry.tries + 1
    limit = state.settings.start_retries
    reset: dict[str, Any] = {
        "phase": "",
        "upid": None,
        "issued_at": None,
        "last_error": error,
        "tries": tries,
    }
    if unsure:
        reset |= {"needs_check": True, "check_after": out.now}
        if state.leader:
            out.add(ObserveGuest(entry.vmid, entry.node, entry.type))
    if tries > limit:
        out.log("warning", f"guest {entry.vmid}: start failed {tries} times, giving up: {error}")
        return move(state, entry, "give-up", out, reason=f"start failed {tries} times: {error}", **reset)
    at = out.now + backoff(state, tries)
    out.wake_at(at)
    out.log("info", f"guest {entry.vmid}: start attempt {tries} failed ({error}); retry in {at - out.now:g}s")
    return move(state, entry, "retry", out, retry_at=at, reason=f"retrying after: {error}", **reset)


def entry_from_guest(guest: GuestInfo, now: float, reason: str, **extra: Any) -> HeldEntry:
    """A new entry the coordinator found itself (reconciliation), from what it knows of the guest."""
    return HeldEntry(
        vmid=guest.vmid,
        node=guest.node,
        type=guest.type,
        gates=guest.gates,
        first_held=now,
        last_held=now,
        ha=guest.ha_managed,
        ha_state=guest.ha_state,
        source="reconcile",
        reason=reason,
        name=guest.name,
        order=guest.order,
        up=guest.up,
        **extra,
    )


def record(entry: HeldEntry, event_id: str) -> HeldStart:
    """The retained `held/<vmid>` message for `entry`."""
    return HeldStart(
        event_id=event_id,
        vmid=entry.vmid,
        node=entry.node,
        type=entry.type,
        gates=list(entry.gates),
        first_held=entry.first_held,
        last_held=entry.last_held,
        attempts=max(entry.attempts, 1),
        ha=entry.ha,
        state=entry.state,
        reason=(entry.reason or entry.last_error)[:2000],
        source="coordinator",
        name=entry.name,
        startup_order=entry.order,
    )


def entry_from_record(msg: HeldStart, *, lost_track: bool, now: float) -> HeldEntry:
    """An entry rebuilt from a retained record; a release it says is in flight is checked first."""
    state: EntryState = msg.state
    unsure = msg.state == "releasing"
    if unsure and lost_track:
        state = "held"
    return HeldEntry(
        vmid=msg.vmid,
        node=msg.node,
        type=msg.type,
        gates=tuple(msg.gates),
        first_held=msg.first_held,
        last_held=msg.last_held,
        attempts=msg.attempts,
        ha=msg.ha,
        state=state,
        reason=msg.reason,
        source=msg.source,
        name=msg.name,
        order=msg.startup_order,
        needs_check=unsure,
        check_after=now,
    )


def publish_changes(state: State, out: Out) -> None:
    """Republish (or clear) the retained record of every entry this step changed (leader only)."""
    if not state.leader or not out.changed:
        return
    for vmid in sorted(out.changed):
        entry = state.held.get(vmid)
        if entry is None:
            out.add(ClearRetained(HELD, vmid))
        else:
            out.add(Publish(record(entry, out.event_id()), retain=True))
