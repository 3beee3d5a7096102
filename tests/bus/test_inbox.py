"""The validating receive loop: bad payloads are dropped and counted, duplicates dropped, nothing raises."""

from __future__ import annotations

import json
import queue
from pathlib import Path

import pytest

from startgate.bus import messages as m
from startgate.bus.broker import MosquittoProcess
from startgate.bus.inbox import Invalid, Received, RecentIds, ValidatingInbox
from startgate.bus.mqtt import ClientSettings, LinkUp, Message, Publisher, SubscriberGroup
from startgate.bus.testing import collect
from startgate.bus.topics import Topics
from startgate.bus.values import BusCounters, Inbound

GOLDEN = Path(__file__).parent / "golden"


def topic_of(topics: Topics) -> dict[str, str]:
    """A topic for each golden sample's kind (matching the keys inside the samples)."""
    return {
        "guest_event": topics.guest_event(101),
        "held": topics.held(101),
        "gate_health": topics.gate_health("linstor"),
        "node_status": topics.node_status("pve1"),
        "node_event": topics.node_event("pve1"),
        "coordinator_status": topics.coordinator_status(),
        "command": topics.command("release"),
        "reply": topics.reply("fedcba9876543210fedcba9876543210"),
        "ticket": topics.ticket(101),
    }


def golden(kind: str, event_id: str = "0123456789abcdef0123456789abcdef") -> bytes:
    """A golden wire sample with its event id replaced."""
    raw = json.loads((GOLDEN / f"{kind}.json").read_text())
    raw["event_id"] = event_id
    return json.dumps(raw).encode()


def inbox_over(items: list[Inbound], topics: Topics, *, keep_invalid: bool = False) -> ValidatingInbox:
    """A ValidatingInbox reading the given raw items from a plain queue."""
    q: queue.Queue[Inbound] = queue.Queue()
    for item in items:
        q.put(item)

    def get(timeout: float | None) -> Inbound | None:
        try:
            return q.get(timeout=timeout)
        except queue.Empty:
            return None

    return ValidatingInbox(get, topics, keep_invalid=keep_invalid)


def test_recent_ids_forget_the_oldest_beyond_their_size() -> None:
    """The duplicate filter holds a bounded number of ids, evicting the least recently seen."""
    ids = RecentIds(size=2)
    assert not ids.seen("a")
    assert not ids.seen("b")
    assert ids.seen("a")
    assert not ids.seen("c")  # evicts b, the least recently seen
    assert len(ids) == 2
    assert ids.seen("a")
    assert not ids.seen("b")


def test_invalid_payloads_are_dropped_and_counted_without_raising() -> None:
    """Garbage, wrong versions, missing fields, oversized and foreign topics are counted and skipped."""
    topics = Topics("sg", "pve1")
    held = topics.held(101)
    bad = [b"not json", b'{"v": 2}', b'{"v": 1}', b"\xff" * (1024 * 1024), b"[]"]
    items: list[Inbound] = [Message(held, p, False, "b") for p in bad]
    items.append(Message("elsewhere/x", b"{}", False, "b"))
    items.append(Message(held, golden("held"), True, "b"))
    inbox = inbox_over(items, topics)
    got = inbox.get(timeout=1)
    assert isinstance(got, Received)
    assert isinstance(got.message, m.HeldStart)
    assert got.retain
    assert inbox.get(timeout=0.05) is None
    assert inbox.counters.snapshot() == BusCounters(dropped_invalid=6)


def test_keep_invalid_hands_out_the_invalid_ones_with_a_short_reason() -> None:
    """With keep_invalid the bad message comes out as Invalid, its reason cut to about 200 characters."""
    topics = Topics("sg", "pve1")
    inbox = inbox_over([Message(topics.held(101), b"{" * 5000, False, "b")], topics, keep_invalid=True)
    got = inbox.get(timeout=1)
    assert isinstance(got, Invalid)
    assert "not JSON" in got.reason
    assert len(got.reason) <= 200
    assert got.size == 5000
    assert inbox.counters.snapshot().dropped_invalid == 1


def test_duplicates_by_event_id_are_dropped_but_clears_and_link_notices_pass() -> None:
    """A second copy of an event id is dropped and counted; Cleared and LinkUp are passed on."""
    topics = Topics("sg", "pve1")
    ev = Message(topics.guest_event(101), golden("guest_event", "e" * 32), False, "b1")
    cleared = Message(topics.held(101), b"", True, "b1")
    items: list[Inbound] = [ev, LinkUp("b2", False, "5"), ev, cleared, cleared]
    inbox = inbox_over(items, topics)
    got = collect(inbox.get, lambda xs: len(xs) >= 4, timeout=1)
    kinds = [type(x.message).__name__ if isinstance(x, Received) else type(x).__name__ for x in got]
    assert kinds == ["GuestEvent", "LinkUp", "Cleared", "Cleared"]
    assert inbox.counters.snapshot().duplicates == 1


@pytest.mark.broker
def test_every_message_type_round_trips_through_the_broker(
    session_broker: MosquittoProcess, topic_prefix: str, fast: ClientSettings
) -> None:
    """Each golden message published on its topic arrives decoded as an equal model."""
    topics = Topics(topic_prefix, "pve1")
    group = SubscriberGroup(
        [session_broker.url], fast, client_id=f"{topic_prefix}-c", topics=[topics.everything]
    )
    inbox = ValidatingInbox(group.get, topics, counters=group.counters)
    group.start().wait_ready(5)
    try:
        sent = {}
        with Publisher([session_broker.url], fast) as pub:
            for i, (kind, topic) in enumerate(sorted(topic_of(topics).items())):
                payload = golden(kind, f"{i:032x}")
                sent[topic] = m.decode(topics, topic, payload)
                pub.publish(topic, payload)
        got = collect(inbox.get, lambda xs: sum(isinstance(x, Received) for x in xs) >= len(sent), 5)
        received = {x.topic: x.message for x in got if isinstance(x, Received)}
        assert received == sent
    finally:
        group.stop()


@pytest.mark.broker
def test_malformed_payloads_on_the_bus_are_dropped_while_good_ones_still_arrive(
    session_broker: MosquittoProcess, topic_prefix: str, fast: ClientSettings
) -> None:
    """Not JSON, wrong v, missing fields and 1 MB of garbage are counted and dropped; the good
    messages before and after them, and a duplicate, come through as they should."""
    topics = Topics(topic_prefix, "pve1")
    group = SubscriberGroup(
        [session_broker.url], fast, client_id=f"{topic_prefix}-c", topics=[topics.everything]
    )
    inbox = ValidatingInbox(group.get, topics, counters=group.counters)
    group.start().wait_ready(5)
    event = topics.guest_event(101)
    try:
        with Publisher([session_broker.url], fast) as pub:
            pub.publish(event, golden("guest_event", "a" * 32))
            for junk in [b"not json", b'{"v": 99}', b'{"v": 1, "vmid": 101}', bytes(range(256)) * 4096]:
                pub.publish(event, junk)
            pub.publish(event, golden("guest_event", "a" * 32))  # the same event again (QoS 1 redelivery)
            pub.publish(event, golden("guest_event", "b" * 32))
        got = collect(inbox.get, lambda xs: sum(isinstance(x, Received) for x in xs) >= 2, 5)
        ids = [
            x.message.event_id for x in got if isinstance(x, Received) and isinstance(x.message, m.Message)
        ]
        assert ids == ["a" * 32, "b" * 32]
        counts = group.counters.snapshot()
        assert (counts.received, counts.dropped_invalid, counts.duplicates) == (7, 4, 1)
    finally:
        group.stop()
