"""A listener on the simulated cluster's broker: what startgate's processes actually said on the bus.

The sim's own event log says what Proxmox saw (a task failed with the hook's line); the tap says
what reached the broker (a `held/<vmid>` record, a guest event, a node's status), each payload
validated by `startgate.bus.messages` exactly as the coordinator and the CLI read it. The demo
prints a short account of it; the integration tests assert on it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from startgate.bus import messages
from startgate.bus.inbox import Invalid, Received, ValidatingInbox
from startgate.bus.mqtt import Subscriber
from startgate.bus.topics import HELD, Topics
from startgate.bus.values import ClientSettings

log = logging.getLogger(__name__)


@dataclass
class BusRecord:
    """Everything the tap received: valid messages in arrival order, and the invalid ones."""

    received: list[Received] = field(default_factory=list)
    invalid: list[Invalid] = field(default_factory=list)

    def of(self, kind: type[messages.Message]) -> list[messages.Message]:
        """The valid messages of one model, oldest first."""
        return [r.message for r in self.received if isinstance(r.message, kind)]

    def held(self) -> dict[int, messages.HeldStart]:
        """The latest `held/<vmid>` record of each guest."""
        out: dict[int, messages.HeldStart] = {}
        for r in self.received:
            if isinstance(r.message, messages.HeldStart):
                out[r.message.vmid] = r.message
        return out

    def held_now(self) -> dict[int, messages.HeldStart]:
        """The retained `held/<vmid>` records still standing: a later empty payload cleared the rest."""
        out: dict[int, messages.HeldStart] = {}
        for r in self.received:
            if isinstance(r.message, messages.HeldStart):
                out[r.message.vmid] = r.message
            elif isinstance(r.message, messages.Cleared) and r.message.ref.kind == HELD:
                out.pop(int(str(r.message.ref.key)), None)
        return out

    def guest_events(self, vmid: int | None = None) -> list[messages.GuestEvent]:
        """Guest lifecycle events (of one guest), oldest first."""
        return [
            m
            for r in self.received
            if isinstance(m := r.message, messages.GuestEvent) and (vmid is None or m.vmid == vmid)
        ]

    def node_status(self) -> dict[str, messages.NodeStatus]:
        """The latest status of each node's agent."""
        out: dict[str, messages.NodeStatus] = {}
        for r in self.received:
            if isinstance(r.message, messages.NodeStatus):
                out[r.message.node] = r.message
        return out

    def nodes_seen_online(self) -> list[str]:
        """The nodes whose agent said "online" at least once, sorted."""
        return sorted(
            {r.message.node for r in self.received if isinstance(r.message, messages.NodeStatus)
             and r.message.state == "online"}
        )  # fmt: skip

    def as_json(self) -> dict[str, object]:
        """The validated messages as JSON-ready data (for `--json`), plus the invalid ones' reasons."""
        return {
            "messages": [
                {"topic": r.topic, "retain": r.retain, "payload": r.message.model_dump(mode="json")}
                for r in self.received
            ],
            "invalid": [{"topic": i.topic, "reason": i.reason} for i in self.invalid],
        }


class BusTap:
    """Subscribes to every startgate topic of one cluster and keeps what arrives (thread-safe copy)."""

    def __init__(self, broker: str, topics: Topics, client_id: str = "startgate-sim-tap") -> None:
        # Back quicker than any startgate process after a broker restart (the tap's session is not
        # persistent: what is published before it is back, a forwarded spool, it would not see).
        settings = ClientSettings(
            keepalive_s=5, connect_timeout_s=1.0, reconnect_min_s=0.01, reconnect_max_s=0.05
        )
        self._sub = Subscriber(
            broker, settings, client_id=client_id, topics=[topics.everything], persistent=False
        )
        self._inbox = ValidatingInbox(self._sub.get, topics, keep_invalid=True)
        self._record = BusRecord()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True, name="sim-bus-tap")

    def start(self, ready_timeout_s: float = 5.0) -> BusTap:
        """Connect, subscribe (waiting until granted, so nothing published afterwards is missed)."""
        self._sub.start()
        self._sub.wait_ready(ready_timeout_s)
        self._thread.start()
        return self

    def _drain(self) -> None:
        while not self._stop.is_set():
            item = self._inbox.get(0.1)
            with self._lock:
                if isinstance(item, Received):
                    self._record.received.append(item)
                elif isinstance(item, Invalid):
                    self._record.invalid.append(item)

    def record(self) -> BusRecord:
        """A copy of what arrived so far."""
        with self._lock:
            return BusRecord(list(self._record.received), list(self._record.invalid))

    def stop(self) -> None:
        """Disconnect and end the drain thread."""
        self._stop.set()
        self._sub.stop()
        if self._thread.is_alive():
            self._thread.join(2.0)


def retained_now(broker: str, topics: Topics, settle_s: float = 0.5) -> BusRecord:
    """What the broker holds retained right now, read by a fresh subscriber (not a tap's memory)."""
    tap = BusTap(broker, topics, client_id=f"startgate-sim-look-{threading.get_ident()}").start()
    try:
        threading.Event().wait(settle_s)  # retained messages follow the subscription grant at once
        return tap.record()
    finally:
        tap.stop()
