"""The loop's bus intake: a burst of raw messages handled in one drain, in order, bad ones dropped."""

from __future__ import annotations

from collections.abc import Sequence

from startgate.bus.messages import GuestEvent
from startgate.bus.topics import Topics
from startgate.bus.values import Inbound, Message
from startgate.coordinator.api import TaskStatus
from startgate.coordinator.busio import BusIn
from startgate.coordinator.loop import Loop
from startgate.coordinator.metrics import Metrics
from startgate.coordinator.testing import FakeNotifier, FakePersister, FakePublisher
from startgate.core.events import Event, GuestMissing, GuestObserved, LockAcquired, Started
from startgate.core.model import GateSpec, GuestType, Settings, initial_state

TOPICS = Topics("startgate", "pve1")


class NoPve:
    """An API nobody calls in these tests."""

    def start(self, node: str, type_: GuestType, vmid: int) -> str:
        raise AssertionError("no start expected")

    def task_status(self, node: str, upid: str) -> TaskStatus:
        raise AssertionError("no task expected")

    def set_ha_state(self, type_: GuestType, vmid: int, state: str) -> None:
        raise AssertionError("no HA change expected")

    def observe(
        self, node: str, type_: GuestType, vmid: int, observed_at: float
    ) -> GuestObserved | GuestMissing:
        return GuestMissing(vmid)

    def reconcile(self, nodes: Sequence[str] | None, observed_at: float, wall: float) -> list[Event]:
        return []


def _hold(vmid: int, reason: str, time: float) -> Message:
    ev = GuestEvent(
        time=time, vmid=vmid, node="pve1", type="qemu", phase="pre-start", decision="hold", reason=reason,
        gates=["linstor"],
    )  # fmt: skip
    return Message(TOPICS.guest_event(vmid), ev.to_json(), False, "mqtt://a")


def test_a_burst_is_handled_in_order_and_a_bad_message_in_it_is_dropped_and_counted() -> None:
    """Every good message of a burst is stepped in arrival order; a malformed one costs only itself."""
    bus_in = BusIn(None, TOPICS)
    stepped: list[tuple[int, str]] = []

    def ingest(item: Inbound) -> Event | None:
        event = bus_in.handle(item)
        if isinstance(event, GuestEvent):
            stepped.append((event.vmid, event.reason))
        return event

    sent = FakePublisher()
    loop = Loop(
        initial_state(Settings(node="pve1", gates=(GateSpec("linstor"),)), "t"),
        pve=NoPve(),
        probes={},
        publisher=sent,
        topics=TOPICS,
        notifier=FakeNotifier(),
        persister=FakePersister(),
        metrics=Metrics(),
        ingest=ingest,
    )
    try:
        loop.feed(Started())
        loop.feed(LockAcquired())
        burst = [_hold(101, "first", 1000.0), _hold(102, "other", 1000.5)]
        burst.append(Message(TOPICS.guest_event(103), b'{"v": 1, "vmid": "nope"}', False, "mqtt://a"))
        burst += [_hold(101, "second", 1001.0), _hold(101, "third", 1002.0)]
        for msg in burst:
            loop.put(msg)
        loop.run_once(0.0)  # one drain takes the whole burst
        assert stepped == [(101, "first"), (102, "other"), (101, "second"), (101, "third")]
        assert sorted(loop.state.held) == [101, 102]
        assert (loop.state.held[101].reason, loop.state.held[101].last_held) == ("third", 1002.0)
        assert bus_in.counters.snapshot().dropped_invalid == 1
        assert TOPICS.held(101) in sent.topics
    finally:
        loop.close()
