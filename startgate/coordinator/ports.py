"""What the coordinator's loop (startgate.coordinator.loop) needs of the parts around it.

The service hands it the real ones (the Proxmox API, the gate probes, the bus publisher, the
state writer, the subscribers' queue); tests and benches hand it fakes with the same shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from startgate.coordinator.api import TaskStatus
from startgate.core.events import Event, GuestMissing, GuestObserved, ProbeResult
from startgate.core.model import GuestType, State


class PveOps(Protocol):
    """The API operations the loop needs (startgate.coordinator.api.Pve)."""

    def start(self, node: str, type_: GuestType, vmid: int) -> str: ...
    def task_status(self, node: str, upid: str) -> TaskStatus: ...
    def set_ha_state(self, type_: GuestType, vmid: int, state: str) -> None: ...
    def observe(
        self, node: str, type_: GuestType, vmid: int, observed_at: float
    ) -> GuestObserved | GuestMissing: ...
    def reconcile(self, nodes: Sequence[str] | None, observed_at: float, wall: float) -> list[Event]: ...


class Prober(Protocol):
    """One gate's probe (startgate.coordinator.probes.GateProbe)."""

    def probe(self) -> ProbeResult: ...


class Publisher(Protocol):
    """Ordered publishing with sequence numbers (startgate.coordinator.busio.BusOut)."""

    def send(self, topic: str, payload: bytes, *, retain: bool, broker: str | None = None) -> int: ...
    def wait(self, seq: int, timeout: float) -> bool: ...


class Persister(Protocol):
    """Where Persist goes (startgate.coordinator.statefile.StateWriter)."""

    def submit(self, state: State) -> None: ...


class Inbox(Protocol):
    """The loop's queue (a queue.SimpleQueue; the MQTT subscribers put raw messages in it too)."""

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None: ...
    def get(self, block: bool = True, timeout: float | None = None) -> Any: ...
    def get_nowait(self) -> Any: ...
