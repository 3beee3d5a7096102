"""The sim's own event log: what happened, when, where. The timeline and the invariant checker read it.

Every part of the simulated cluster appends here at the moment something changes (a node came
up, a start was requested, a hook refused, a guest began running, a gate turned healthy). The
record is the simulation's account of the run; nothing that prints it feeds back into it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

EventKind = Literal[
    "node_up",
    "node_down",
    "quorum",
    "startall",
    "start_requested",
    "start_refused",
    "hook",
    "held",
    "start_failed",
    "guest_running",
    "guest_stopped",
    "gate_healthy",
    "gate_unhealthy",
    "satellite_online",
    "ha_state",
    "fault",
    "note",
]

# Where a start failed: taking the config lock, the pre-start hook, activating volumes (for a
# container whose hook is attached: before its pre-start ever ran), launching; "" when unknown.
Stage = Literal["", "lock", "hook", "volumes", "volumes-before-hook", "launch"]


@dataclass(frozen=True)
class SimEvent:
    """One thing that happened in the simulated cluster, at simulated time `t` (seconds since start)."""

    t: float
    kind: EventKind
    node: str = ""
    vmid: int | None = None
    detail: str = ""
    source: str = ""  # who asked: startall, ha, api:<token id>, sim
    upid: str = ""
    unhealthy_gates: tuple[str, ...] = ()  # on guest_running: member gates unhealthy when it passed pre-start
    stage: Stage = ""  # on start_failed / held: where the start failed (see `Stage`)
    real_ms: int | None = None  # on hook: how long the hook ran, in REAL milliseconds

    def as_json(self) -> dict[str, object]:
        """A JSON-ready mapping of this event."""
        return {
            "t": round(self.t, 3),
            "kind": self.kind,
            "node": self.node,
            "vmid": self.vmid,
            "detail": self.detail,
            "source": self.source,
            "upid": self.upid,
            "unhealthy_gates": list(self.unhealthy_gates),
            "stage": self.stage,
            "real_ms": self.real_ms,
        }


class EventLog:
    """A thread-safe, append-only list of `SimEvent`s stamped by one clock."""

    def __init__(self, elapsed: Callable[[], float]) -> None:
        self._elapsed = elapsed
        self._events: list[SimEvent] = []
        self._cond = threading.Condition()

    def add(
        self,
        kind: EventKind,
        *,
        node: str = "",
        vmid: int | None = None,
        detail: str = "",
        source: str = "",
        upid: str = "",
        unhealthy_gates: tuple[str, ...] = (),
        stage: Stage = "",
        real_ms: int | None = None,
    ) -> SimEvent:
        """Record an event now and wake anyone waiting for one."""
        with self._cond:
            ev = SimEvent(
                self._elapsed(), kind, node, vmid, detail, source, upid, unhealthy_gates, stage, real_ms
            )
            self._events.append(ev)
            self._cond.notify_all()
            return ev

    def snapshot(self) -> list[SimEvent]:
        """A copy of every event so far, oldest first."""
        with self._cond:
            return list(self._events)

    def last_time(self) -> float:
        """The simulated time of the newest event (0 when there is none)."""
        with self._cond:
            return self._events[-1].t if self._events else 0.0

    def __len__(self) -> int:
        with self._cond:
            return len(self._events)

    def of_kind(self, kind: EventKind, vmid: int | None = None) -> list[SimEvent]:
        """The events of one kind (optionally for one guest), oldest first."""
        with self._cond:
            return [e for e in self._events if e.kind == kind and (vmid is None or e.vmid == vmid)]
