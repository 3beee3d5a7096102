"""The hook's decisions that need no I/O: what a retained gate health or release ticket means now.

- A retained gate health is believed, healthy or not, when its `checked_at` is at most
  `hook.health_max_age_s` old; older or absent, the hook runs the gate's own check. A healthy
  LINSTOR gate whose check requires the node to be ready (`node_ready`) and whose message lists
  the ready nodes counts as unhealthy for a node missing from that list.
- A release ticket (`ticket/<vmid>`, from `startgate release --force`) is honoured once: while it
  has not expired, and only if its event id is not the one this node already used. The hook
  records the id it used under `<state_dir>/hook/tickets/<vmid>`, so a second start with the same
  ticket is held again; the coordinator clears the ticket when it sees the allow event.
"""

from __future__ import annotations

from typing import NamedTuple

from startgate.hooks.payloads import decode

RETAINED = "retained"
PROBE = "probe"


class GateState(NamedTuple):
    """What the hook believes about one gate: healthy or not, why, and where that came from."""

    gate: str
    healthy: bool
    detail: str
    source: str  # RETAINED or PROBE


class TicketUse(NamedTuple):
    """A release ticket the hook may honour now."""

    ticket_id: str
    requested_by: str
    expires: float


def retained_gate(
    gate: str, payload: bytes | None, *, now: float, max_age: float, node: str, node_ready: bool
) -> GateState | None:
    """The gate's state from its retained health if that is fresh, else None (run the check)."""
    data = decode(payload)
    if data is None or data.get("gate") != gate:
        return None
    healthy = data.get("healthy")
    checked_at = data.get("checked_at")
    if (
        not isinstance(healthy, bool)
        or isinstance(checked_at, bool)
        or not isinstance(checked_at, int | float)
    ):
        return None
    age = now - checked_at
    if age > max_age or age < -max_age:  # too old, or from a clock far in the future: check ourselves
        return None
    detail = str(data.get("detail") or "")
    ready = data.get("nodes_ready")
    if healthy and node_ready and isinstance(ready, list) and node not in ready:
        return GateState(
            gate, False, f"node {node} is not ready (its LINSTOR satellite is not ONLINE)", RETAINED
        )
    if not detail:
        detail = "healthy" if healthy else "unhealthy"
    return GateState(gate, healthy, f"{detail} ({age:.0f} s ago)", RETAINED)


def usable_ticket(payload: bytes | None, vmid: int, now: float, consumed: str | None) -> TicketUse | None:
    """The ticket for `vmid` if it is valid now and not already used on this node, else None."""
    data = decode(payload)
    if data is None or data.get("vmid") != vmid:
        return None
    ticket_id = data.get("event_id")
    expires = data.get("expires")
    if not isinstance(ticket_id, str) or not ticket_id or isinstance(expires, bool):
        return None
    if not isinstance(expires, int | float) or now >= expires:
        return None
    if ticket_id == consumed:
        return None
    return TicketUse(ticket_id, str(data.get("requested_by") or ""), float(expires))


def describe_gates(states: list[GateState]) -> str:
    """`gate "linstor" is healthy (...)` / `gates "a", "b" are ...` for the task-log line."""
    names = ", ".join(f'"{s.gate}"' for s in states)
    return f"gate {names}" if len(states) == 1 else f"gates {names}"


def hold_line(label: str, waiting: list[GateState], spooled: bool) -> str:
    """The one task-log line of a held start."""
    details = "; ".join(s.detail if len(waiting) == 1 else f"{s.gate}: {s.detail}" for s in waiting)
    verb = "is" if len(waiting) == 1 else "are"
    tail = " (recorded locally: no broker answered)" if spooled else ""
    return (
        f"startgate: holding start of {label} until {describe_gates(waiting)} {verb} healthy "
        f"({details}); it will be started automatically{tail}"
    )
