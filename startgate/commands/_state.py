"""The cluster's retained state as the CLI sees it: one value built from decoded bus messages.

Several brokers may hold copies of the same retained topic (the coordinator writes every broker
in `bus.brokers`). A copy that is older than the one already kept is ignored, so a broker that
missed updates while it was down cannot roll the picture back; on a tie the first copy stays
(brokers are read in list order, the node's own first). No I/O here: the bus reader fills it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from startgate.bus import messages as m
from startgate.bus import topics as t

K = TypeVar("K", int, str)
M = TypeVar("M", bound=m.Message)


def _stamp(msg: m.Message) -> float:
    """The time a retained message describes, for choosing the newest of several copies."""
    if isinstance(msg, m.GateHealth):
        return msg.checked_at
    if isinstance(msg, m.HeldStart):
        return msg.last_held
    if isinstance(msg, m.NodeStatus | m.CoordinatorStatus | m.Ticket):
        return msg.time
    return 0.0


@dataclass(frozen=True)
class BrokerState:
    """Whether one broker of `bus.brokers` answered, and why not."""

    url: str
    ready: bool
    error: str = ""


@dataclass
class ClusterState:
    """Gates' health, held starts, node agents, the leader coordinator and release tickets."""

    gates: dict[str, m.GateHealth] = field(default_factory=dict)
    held: dict[int, m.HeldStart] = field(default_factory=dict)
    nodes: dict[str, m.NodeStatus] = field(default_factory=dict)
    tickets: dict[int, m.Ticket] = field(default_factory=dict)
    coordinator: m.CoordinatorStatus | None = None
    brokers: tuple[BrokerState, ...] = ()
    invalid: int = 0

    def apply(self, msg: m.Message | m.Cleared) -> bool:
        """Take one decoded message into the picture; True when something changed."""
        if isinstance(msg, m.Cleared):
            changed = self._clear(msg.ref)
        elif isinstance(msg, m.GateHealth):
            changed = self._keep(self.gates, msg.gate, msg)
        elif isinstance(msg, m.HeldStart):
            changed = self._keep(self.held, msg.vmid, msg)
        elif isinstance(msg, m.NodeStatus):
            changed = self._keep(self.nodes, msg.node, msg)
        elif isinstance(msg, m.Ticket):
            changed = self._keep(self.tickets, msg.vmid, msg)
        elif isinstance(msg, m.CoordinatorStatus):
            old = self.coordinator
            changed = old is None or (old != msg and _stamp(old) <= _stamp(msg))
            if changed:
                self.coordinator = msg
        else:
            changed = False  # events, commands and replies are not state
        return changed

    @staticmethod
    def _keep(table: dict[K, M], key: K, msg: M) -> bool:
        old = table.get(key)
        if old is not None and (old == msg or _stamp(old) > _stamp(msg)):
            return False
        table[key] = msg
        return True

    def _clear(self, ref: t.TopicRef) -> bool:
        key = ref.key
        if ref.kind == t.COORDINATOR_STATUS:
            changed = self.coordinator is not None
            self.coordinator = None
            return changed
        if ref.kind == t.GATE_HEALTH and isinstance(key, str):
            return self.gates.pop(key, None) is not None
        if ref.kind == t.NODE_STATUS and isinstance(key, str):
            return self.nodes.pop(key, None) is not None
        if ref.kind == t.HELD and isinstance(key, int):
            return self.held.pop(key, None) is not None
        if ref.kind == t.TICKET and isinstance(key, int):
            return self.tickets.pop(key, None) is not None
        return False

    @property
    def reachable(self) -> tuple[str, ...]:
        """The brokers that answered."""
        return tuple(b.url for b in self.brokers if b.ready)

    def held_for(self, gate: str) -> list[m.HeldStart]:
        """The held starts that wait on `gate`."""
        return [h for h in self.held.values() if gate in h.gates]

    def held_sorted(self) -> list[m.HeldStart]:
        """Held starts in release order: node, startup order (none last), then VMID."""
        return sorted(
            self.held.values(),
            key=lambda h: (h.node, h.startup_order is None, h.startup_order or 0, h.vmid),
        )
