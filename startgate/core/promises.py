"""The core's promises as executable checks over one step (used by the property tests and the fakes).

Given the state before and after a step and the actions it returned, `check_step` lists every
broken promise: a release while a gate is unhealthy (without a ticket), a release that skips a
lower order level that was ready, two order levels or more than `max_parallel_starts` starts in
flight on one node, a new level during an `up=` delay, and per-node indexes out of step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from startgate.core import lifecycle, release
from startgate.core.actions import Action, SetHaState, StartGuest
from startgate.core.model import State, order_key


def released(actions: Iterable[Action]) -> list[int]:
    """VMIDs whose start was issued by these actions (an API start, or HA state `started`)."""
    return [
        a.vmid
        for a in actions
        if isinstance(a, StartGuest) or (isinstance(a, SetHaState) and a.state == "started")
    ]


def check_step(before: State, after: State, actions: tuple[Action, ...], now: float) -> list[str]:
    """Every promise this step broke, one line each (empty when all hold)."""
    problems = _gates(after, actions, now) + _pacing(before, after, actions, now)
    fresh = lifecycle.with_entries(after, after.held.values())
    if (fresh.order_index, fresh.inflight) != (dict(after.order_index), dict(after.inflight)):
        problems.append("the per-node indexes drifted from the held queue")
    return problems


def _gates(after: State, actions: tuple[Action, ...], now: float) -> list[str]:
    problems = []
    for vmid in released(actions):
        e = after.held.get(vmid)
        if e is None or e.state != "releasing":
            problems.append(f"guest {vmid} released without a releasing entry")
            continue
        ticket = after.tickets.get(vmid)
        if ticket is not None and ticket.expires > now:
            continue
        if not release.gate_verdict(after, dataclasses.replace(e, forced=False), now).ok:
            problems.append(f"guest {vmid} released while a gate is unhealthy")
    return problems


def _pacing(before: State, after: State, actions: tuple[Action, ...], now: float) -> list[str]:
    problems = []
    by_node: dict[str, list[int]] = {}
    for e in after.held.values():
        if e.state == "releasing":
            by_node.setdefault(e.node, []).append(order_key(e.order))
    for node, orders in by_node.items():
        if len(orders) > after.settings.max_parallel_starts:
            problems.append(f"{len(orders)} starts in flight on {node}")
        if len(set(orders)) > 1:
            problems.append(f"order levels {sorted(set(orders))} in flight on {node}")
    was = {v for v, e in before.held.items() if e.state == "releasing"}
    for vmid in {a.vmid for a in actions if isinstance(a, StartGuest | SetHaState)} - was:
        entry = after.held.get(vmid)
        if entry is None:
            continue
        e = entry
        lower = [
            o.vmid
            for o in after.held.values()
            if o.node == e.node
            and order_key(o.order) < order_key(e.order)
            and release.is_candidate(after, o, now)
        ]
        if lower:
            problems.append(f"{vmid} released before lower-order {lower} on {e.node}")
        idle = not any(o.state == "releasing" and o.node == e.node for o in before.held.values())
        pacing = before.pacing.get(e.node)
        if idle and pacing is not None and now < pacing.not_before:
            problems.append(f"{vmid} released during the up= delay on {e.node}")
    return problems
