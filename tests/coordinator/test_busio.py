"""The coordinator's bus sides: validation and dedupe in, per-broker ordered publishing out."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from startgate.bus import messages as m
from startgate.bus.topics import Topics
from startgate.bus.values import LinkUp, Message
from startgate.coordinator.busio import BusIn, BusOut
from startgate.core.events import BadCommand, BusConnected
from startgate.errors import BrokerUnavailableError

TOPICS = Topics("sg", "c1")


def _raw(msg: m.Message, topic: str, broker: str = "mqtt://a", retain: bool = False) -> Message:
    return Message(topic, msg.to_json(), retain, broker)


def test_busin_decodes_dedupes_and_answers_a_bad_command() -> None:
    """Copies from two brokers arrive once; a malformed command becomes BadCommand; LinkUp BusConnected."""
    bus = BusIn(lambda _t: None, TOPICS, lambda _e: None)
    ev = m.NodeEvent(time=1.0, node="pve1", kind="boot")
    first = bus.handle(_raw(ev, TOPICS.node_event("pve1")))
    assert first == ev
    assert bus.handle(_raw(ev, TOPICS.node_event("pve1"), broker="mqtt://b")) is None
    bad = Message(TOPICS.command("release"), b'{"v": 1, "event_id": "req-12345678", "verb": 7}', False, "x")
    out = bus.handle(bad)
    assert isinstance(out, BadCommand)
    assert out.request_id == "req-12345678"
    assert bus.handle(Message(TOPICS.command("drop"), b"not json", False, "x")) is None
    assert bus.handle(LinkUp("mqtt://b", False, "5")) == BusConnected("mqtt://b")
    assert bus.counters.snapshot().duplicates == 1
    assert bus.counters.snapshot().dropped_invalid == 2


class Link:
    """A fake broker link: records publications; can be down or slow."""

    def __init__(self, url: str, *, connected: bool = True, delay: float = 0.0) -> None:
        self.url = url
        self.connected = connected
        self.delay = delay
        self.got: list[str] = []
        self.busy = threading.Event()  # set once a publication is under way

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, timeout: float = 5.0) -> None:
        if not self.connected:
            raise BrokerUnavailableError("down")
        self.busy.set()
        threading.Event().wait(self.delay)
        self.got.append(topic)

    def publish_batch(self, items: Sequence[tuple[str, bytes, bool]], *, timeout: float = 5.0) -> None:
        if not self.connected:
            raise BrokerUnavailableError("down")
        self.busy.set()
        threading.Event().wait(self.delay)  # one round trip for the whole batch, as pipelined
        self.got.extend(topic for topic, _payload, _retain in items)


def test_busout_keeps_order_per_broker_and_skips_a_down_one() -> None:
    """Every broker gets the publications in order; a down broker never holds up `wait`."""
    up, down = Link("mqtt://up"), Link("mqtt://down", connected=False)
    out = BusOut([up, down], timeout_s=0.5).start()
    seqs = [out.send(f"t/{i}", b"x", retain=True) for i in range(20)]
    assert out.wait(seqs[-1], 5.0)
    assert up.got == [f"t/{i}" for i in range(20)]
    assert out.failed == 20
    out.send("only/down", b"", retain=True, broker="mqtt://down")
    assert out.wait(out.last_seq, 5.0)
    assert "only/down" not in up.got
    out.close()


def test_busout_wait_times_out_on_a_slow_broker() -> None:
    """`wait` is bounded: a broker that takes long to acknowledge makes it return False."""
    slow = Link("mqtt://slow", delay=0.5)
    out = BusOut([slow]).start()
    seq = out.send("t", b"x", retain=False)
    t0 = time.monotonic()
    assert not out.wait(seq, 0.05)
    assert time.monotonic() - t0 < 0.4
    assert out.wait(seq, 5.0)
    out.close()


def test_busout_coalesces_retained_updates_of_one_topic() -> None:
    """In a burst, only the last retained payload per topic is published; other messages all go."""
    slow = Link("mqtt://slow", delay=0.2)
    out = BusOut([slow]).start()
    out.send("first", b"x", retain=False)  # keeps the thread busy while the burst queues up
    for i in range(10):
        out.send("held/101", str(i).encode(), retain=True)
        out.send(f"reply/{i}", b"r", retain=False)
    assert out.wait(out.last_seq, 10.0)
    assert slow.got.count("held/101") == 1
    assert [t for t in slow.got if t.startswith("reply/")] == [f"reply/{i}" for i in range(10)]
    out.close()


def test_busout_coalesces_a_backlog_longer_than_one_round_trip() -> None:
    """A backlog of many batches is coalesced as a whole, and what is left is published in order."""
    slow = Link("mqtt://slow", delay=0.2)
    out = BusOut([slow]).start()
    out.send("first", b"x", retain=False)  # keeps the thread busy while the backlog queues up
    assert slow.busy.wait(5.0)  # taken alone, before the backlog below is queued
    for i in range(300):
        out.send(f"held/{100 + i % 2}", str(i).encode(), retain=True)
        out.send(f"reply/{i}", b"r", retain=False)
    assert out.wait(out.last_seq, 10.0)
    assert slow.got.count("held/100") == 1
    assert slow.got.count("held/101") == 1
    assert [t for t in slow.got if t.startswith("reply/")] == [f"reply/{i}" for i in range(300)]
    assert slow.got[-4:] == ["held/100", "reply/298", "held/101", "reply/299"]  # where last queued
    out.close()
