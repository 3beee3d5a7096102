"""The hook's hand-built payloads are valid messages of the pydantic models, and decoding is robust."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from startgate.bus import messages
from startgate.bus.topics import Topics
from startgate.hooks import payloads

TOPICS = Topics("startgate", "pve1")


def check(topic: str, payload: dict[str, object]) -> messages.Message:
    """Validate a payload exactly as receivers do."""
    msg = messages.decode(TOPICS, topic, payloads.encode(payload))
    assert isinstance(msg, messages.Message)
    return msg


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"decision": "allow", "reason": "not a member of any gate"},
        {"decision": "hold", "reason": "x" * 5000, "gates": ["linstor", "nfs"], "ha": True},
        {"decision": "allow", "error": "boom " * 1000},
    ],
)
def test_guest_events_validate(extra: dict[str, object]) -> None:
    """Every shape of guest event the hook sends is a valid GuestEvent (long texts are cut)."""
    p = payloads.guest_event(time=1.5, vmid=101, node="pve1", guest_type="qemu", phase="pre-start", **extra)  # type: ignore[arg-type]  # parametrized kwargs
    msg = check(TOPICS.guest_event(101), p)
    assert isinstance(msg, messages.GuestEvent)
    assert len(msg.reason) <= 2000


def test_held_start_new_and_continued() -> None:
    """A first hold starts at attempts 1; the next continues first_held and counts up."""
    first = payloads.held_start(
        now=1000.0,
        vmid=101,
        node="pve1",
        guest_type="lxc",
        gates=["linstor"],
        previous=None,
        ha=False,
        reason="linstor: no answer",
        name="n" * 300,
        startup_order=2,
    )
    m1 = check(TOPICS.held(101), first)
    assert isinstance(m1, messages.HeldStart)
    assert (m1.attempts, m1.first_held, m1.last_held, len(m1.name or "")) == (1, 1000.0, 1000.0, 128)
    second = payloads.held_start(
        now=1010.0,
        vmid=101,
        node="pve1",
        guest_type="lxc",
        gates=["linstor"],
        previous=payloads.decode(payloads.encode(first)),
        ha=True,
        reason="r",
        name=None,
        startup_order=None,
    )
    m2 = check(TOPICS.held(101), second)
    assert isinstance(m2, messages.HeldStart)
    assert (m2.attempts, m2.first_held, m2.last_held) == (2, 1000.0, 1010.0)


@pytest.mark.parametrize(
    "previous",
    [
        {"vmid": 102, "first_held": 1.0, "attempts": 5},  # another guest's record
        {"vmid": 101, "first_held": "yesterday", "attempts": 5},
        {"vmid": 101, "first_held": 5000.0, "attempts": 5},  # from the future
        {"vmid": 101, "first_held": True, "attempts": 5},
    ],
)
def test_held_start_ignores_a_damaged_previous_record(previous: dict[str, object]) -> None:
    """A previous record that does not fit is ignored: the hold starts afresh."""
    p = payloads.held_start(
        now=1000.0,
        vmid=101,
        node="pve1",
        guest_type="qemu",
        gates=["linstor"],
        previous=previous,
        ha=False,
        reason="r",
        name=None,
        startup_order=None,
    )
    assert (p["attempts"], p["first_held"]) == (1, 1000.0)


def test_held_start_keeps_first_held_when_attempts_is_damaged() -> None:
    """A good first_held with a bad attempts count keeps first_held and restarts the count."""
    p = payloads.held_start(
        now=1000.0,
        vmid=101,
        node="pve1",
        guest_type="qemu",
        gates=["linstor"],
        previous={"vmid": 101, "first_held": 10.0, "attempts": -3},
        ha=False,
        reason="r",
        name=None,
        startup_order=None,
    )
    assert (p["attempts"], p["first_held"]) == (1, 10.0)


def test_event_ids_are_fresh_and_valid() -> None:
    """Event ids are 32 hex digits and differ every time."""
    ids = {payloads.new_event_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


@given(st.binary(max_size=200))
def test_decode_never_raises(data: bytes) -> None:
    """Any bytes decode to a dict of schema version 1 or None."""
    out = payloads.decode(data)
    assert out is None or out.get("v") == 1


def test_decode_rejects_other_versions_and_shapes() -> None:
    """Lists, other versions and empty payloads are not records."""
    assert payloads.decode(b"") is None
    assert payloads.decode(json.dumps([1]).encode()) is None
    assert payloads.decode(json.dumps({"v": 2}).encode()) is None
    assert payloads.decode(json.dumps({"v": 1, "a": 1}).encode()) == {"v": 1, "a": 1}
