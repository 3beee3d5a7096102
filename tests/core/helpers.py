"""A small driver for table-driven core tests: step events at chosen times, look at the actions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from startgate.bus.messages import GuestEvent, HeldStart
from startgate.core.actions import Action, Publish
from startgate.core.events import Event, GuestObserved, LockAcquired, ProbeResult, Started
from startgate.core.machine import step
from startgate.core.model import GateSpec, GuestType, HeldEntry, Settings, State, initial_state

A = TypeVar("A")
T0 = 1_764_500_000.0
NODES = frozenset({"pve1", "pve2", "pve3"})


def settings(**overrides: Any) -> Settings:
    """Test settings: one linstor gate (node readiness on), two parallel starts, two retries."""
    base: dict[str, Any] = {
        "node": "pve1",
        "gates": (GateSpec("linstor", interval_s=2.0, healthy_after=3, node_ready=True, vmid=100),),
        "max_parallel_starts": 2,
        "start_retries": 2,
        "retry_backoff_s": 5.0,
        "reconcile_interval_s": 30.0,
    }
    base.update(overrides)
    return Settings(**base)


class Run:
    """One coordinator's state driven through events; remembers every action."""

    def __init__(self, s: Settings | None = None, *, leader: bool = True, now: float = T0) -> None:
        self.state: State = initial_state(s or settings(), "t")
        self.now = now
        self.actions: list[Action] = []
        self.send(Started())
        if leader:
            self.send(LockAcquired())

    def send(self, event: Event, *, after: float = 0.0) -> tuple[Action, ...]:
        """Step one event `after` seconds later; return (and remember) its actions."""
        self.now += after
        self.state, actions = step(self.state, event, self.now)
        self.actions.extend(actions)
        return actions

    def send_all(self, events: Iterable[Event], *, after: float = 0.0) -> list[Action]:
        """Step several events; return all their actions."""
        out: list[Action] = []
        for i, ev in enumerate(events):
            out.extend(self.send(ev, after=after if i == 0 else 0.0))
        return out

    def healthy(
        self, gate: str = "linstor", nodes: Iterable[str] = NODES, *, passes: int = 3
    ) -> list[Action]:
        """Send enough passing probe results to make `gate` healthy."""
        out: list[Action] = []
        for _ in range(passes):
            out.extend(
                self.send(ProbeResult(gate=gate, ok=True, latency_ms=1.0, nodes_online=frozenset(nodes)))
            )
        return out

    def unhealthy(self, gate: str = "linstor") -> tuple[Action, ...]:
        """Send one failing probe result."""
        return self.send(ProbeResult(gate=gate, ok=False, detail="connection refused"))

    def hold(self, vmid: int, node: str = "pve1", **kw: Any) -> tuple[Action, ...]:
        """The hook refused a start of `vmid` on `node`."""
        return self.send(hold_event(vmid, node, self.now, **kw))

    def entry(self, vmid: int) -> HeldEntry:
        """The held entry of `vmid` (KeyError if none)."""
        return self.state.held[vmid]


def hold_event(
    vmid: int,
    node: str = "pve1",
    time: float = T0,
    *,
    gates: Sequence[str] = ("linstor",),
    ha: bool = False,
    type_: GuestType = "qemu",
) -> GuestEvent:
    """A hook's pre-start refusal."""
    return GuestEvent(
        time=time,
        vmid=vmid,
        node=node,
        type=type_,
        phase="pre-start",
        decision="hold",
        reason="gate linstor unhealthy",
        gates=list(gates),
        ha=ha,
    )


def guest_event(vmid: int, phase: str, node: str = "pve1", time: float = T0, **kw: Any) -> GuestEvent:
    """Any hook lifecycle event."""
    return GuestEvent(time=time, vmid=vmid, node=node, type="qemu", phase=phase, **kw)


def held_record(
    vmid: int, node: str = "pve1", *, source: str = "hook", time: float = T0, **kw: Any
) -> HeldStart:
    """A retained `held/<vmid>` record."""
    base: dict[str, Any] = {
        "vmid": vmid,
        "node": node,
        "type": "qemu",
        "gates": ["linstor"],
        "first_held": time,
        "last_held": time,
        "source": source,
    }
    base.update(kw)
    return HeldStart(**base)


def observed(vmid: int, node: str = "pve1", status: str = "stopped", **kw: Any) -> GuestObserved:
    """A guest as the API shows it (a member of linstor unless told otherwise)."""
    base: dict[str, Any] = {
        "vmid": vmid,
        "node": node,
        "type": "qemu",
        "status": status,
        "gates": ("linstor",),
    }
    base.update(kw)
    return GuestObserved(**base)


def of(actions: Iterable[Action], kind: type[A]) -> list[A]:
    """The actions of one type."""
    return [a for a in actions if isinstance(a, kind)]


def published(actions: Iterable[Action], kind: type[A]) -> list[A]:
    """The messages of one type among Publish actions."""
    return [a.message for a in actions if isinstance(a, Publish) and isinstance(a.message, kind)]
