"""Freshness of retained gate health and validity of release tickets, with `now` passed in."""

from __future__ import annotations

from startgate.bus import messages
from startgate.hooks.decide import GateState, hold_line, retained_gate, usable_ticket

NOW = 10_000.0


def health(healthy: bool, checked_at: float, **kw: object) -> bytes:
    """A GateHealth payload as the coordinator sends it."""
    return messages.GateHealth(
        gate="linstor", healthy=healthy, since=1.0, checked_at=checked_at, **kw
    ).to_json()


def state(payload: bytes | None, node_ready: bool = True) -> GateState | None:
    """retained_gate for the linstor gate on node pve1, max age 10 s."""
    return retained_gate("linstor", payload, now=NOW, max_age=10.0, node="pve1", node_ready=node_ready)


def test_fresh_health_is_believed_both_ways() -> None:
    """Healthy and unhealthy records younger than the max age are taken as they are."""
    up = state(health(True, NOW - 3, detail="HTTP 200"))
    assert up == GateState("linstor", True, "HTTP 200 (3 s ago)", "retained")
    down = state(health(False, NOW - 9))
    assert down is not None
    assert down.healthy is False


def test_stale_missing_or_foreign_health_means_check_yourself() -> None:
    """Old, absent, damaged, another gate's, or far-future records are not believed."""
    assert state(health(True, NOW - 11)) is None
    assert state(None) is None
    assert state(b"not json") is None
    assert state(health(True, NOW + 60)) is None
    other = messages.GateHealth(gate="nfs", healthy=True, since=1.0, checked_at=NOW).to_json()
    assert state(other) is None


def test_node_readiness() -> None:
    """A healthy LINSTOR gate is not healthy for a node missing from nodes_ready (when required)."""
    payload = health(True, NOW, nodes_ready=["pve2"])
    s = state(payload)
    assert s is not None
    assert s.healthy is False
    assert "node pve1 is not ready" in s.detail
    s = state(payload, node_ready=False)
    assert s is not None
    assert s.healthy is True
    s = state(health(True, NOW))  # no list at all: nothing to check
    assert s is not None
    assert s.healthy is True


def ticket(vmid: int = 101, expires: float = NOW + 30) -> tuple[bytes, str]:
    """A Ticket payload and its id."""
    t = messages.Ticket(time=NOW, vmid=vmid, expires=expires, requested_by="root@pam")
    return t.to_json(), t.event_id


def test_ticket_rules() -> None:
    """Valid until expires, for its own VMID only, and once per ticket id."""
    payload, tid = ticket()
    use = usable_ticket(payload, 101, NOW, consumed=None)
    assert use is not None
    assert (use.ticket_id, use.requested_by) == (tid, "root@pam")
    assert usable_ticket(payload, 101, NOW, consumed=tid) is None
    assert usable_ticket(payload, 101, NOW, consumed="an-older-ticket") is not None
    assert usable_ticket(payload, 102, NOW, consumed=None) is None
    assert usable_ticket(ticket(expires=NOW)[0], 101, NOW, consumed=None) is None
    assert usable_ticket(None, 101, NOW, consumed=None) is None
    assert usable_ticket(b"{}", 101, NOW, consumed=None) is None


def test_hold_line_for_one_and_for_several_gates() -> None:
    """The task-log line names each waiting gate and why."""
    one = [GateState("linstor", False, "no answer from 10.43.7.254:3370", "probe")]
    assert hold_line("VM 101", one, spooled=False) == (
        'startgate: holding start of VM 101 until gate "linstor" is healthy '
        "(no answer from 10.43.7.254:3370); it will be started automatically"
    )
    two = [*one, GateState("nfs", False, "HTTP 503 from nas:80", "probe")]
    line = hold_line("CT 202", two, spooled=True)
    assert line.startswith(
        'startgate: holding start of CT 202 until gates "linstor", "nfs" are healthy (linstor: '
    )
    assert line.endswith("(recorded locally: no broker answered)")
