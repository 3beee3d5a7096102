"""The loop follows a start task to its end, through task-status reads that fail."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from startgate.bus.messages import GuestEvent
from startgate.bus.topics import Topics
from startgate.coordinator.api import TaskStatus
from startgate.coordinator.loop import Loop, LoopOptions
from startgate.coordinator.metrics import Metrics
from startgate.coordinator.testing import FakeNotifier, FakePersister, FakePublisher
from startgate.core.events import (
    Event,
    GuestMissing,
    GuestObserved,
    LockAcquired,
    ProbeResult,
    Started,
)
from startgate.core.model import GateSpec, GuestType, Settings, initial_state
from startgate.errors import ProxmoxError

TOPICS = Topics("startgate", "pve1")
UPID = "UPID:pve1:00001234:00005678:6B0E34CB:qmstart:101:startgate@pve!coordinator:"


class FlakyTasks:
    """An API whose first `failures` task-status reads fail like a pveproxy timing out."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.reads = 0
        self.starts: list[int] = []
        self.lock = threading.Lock()

    def start(self, node: str, type_: GuestType, vmid: int) -> str:
        self.starts.append(vmid)
        return UPID

    def task_status(self, node: str, upid: str) -> TaskStatus:
        with self.lock:
            self.reads += 1
            if self.reads <= self.failures:
                raise ProxmoxError("GET /nodes/pve1/tasks/.../status: 504 Gateway Timeout", 504)
        return TaskStatus(running=False, ok=True, exitstatus="OK")

    def set_ha_state(self, type_: GuestType, vmid: int, state: str) -> None:
        raise AssertionError("no HA change expected")

    def observe(
        self, node: str, type_: GuestType, vmid: int, observed_at: float
    ) -> GuestObserved | GuestMissing:
        return GuestObserved(vmid, node, type_, "stopped", gates=("linstor",), observed_at=observed_at)

    def reconcile(self, nodes: Sequence[str] | None, observed_at: float, wall: float) -> list[Event]:
        return []


def test_a_failed_task_status_read_is_retried_until_the_task_is_seen_to_end() -> None:
    """Three failed status reads of a released start's task are retried; its success clears the hold."""
    pve = FlakyTasks(failures=3)
    settings = Settings(node="pve1", gates=(GateSpec("linstor", healthy_after=1),), max_parallel_starts=1)
    loop = Loop(
        initial_state(settings, "t"),
        pve=pve,
        probes={},
        publisher=FakePublisher(),
        topics=TOPICS,
        notifier=FakeNotifier(),
        persister=FakePersister(),
        metrics=Metrics(),
        options=LoopOptions(poll_min_s=0.01, poll_max_s=0.05),
    )
    try:
        loop.feed(Started())
        loop.feed(LockAcquired())
        hold = GuestEvent(
            time=time.time(), vmid=101, node="pve1", type="qemu", phase="pre-start", decision="hold",
            reason="linstor: no answer", gates=["linstor"],
        )  # fmt: skip
        loop.feed(hold)
        loop.feed(ProbeResult("linstor", ok=True))
        end = time.monotonic() + 10.0
        while 101 in loop.state.held and time.monotonic() < end:
            loop.run_once(0.05)
        assert pve.starts == [101]
        assert pve.reads == 4
        assert 101 not in loop.state.held
    finally:
        loop.close()
