"""The three properties a run must have, checked from the sim's own record of it.

1. `should_run`: every guest that should run ends running. A guest should run when it is wanted
   (onboot, or HA-managed with requested state `started`), it has a node to run on (its own node is
   up, or for HA any node is), and every gate it belongs to is healthy at the end.
2. `gated`: no guest started while a gate it belongs to was unhealthy (each `guest_running` event
   carries the member gates that were unhealthy both when its start began and when it went past
   the pre-start hook: the start's decision; a gate that fails during the launch after it, or while
   a start begun on a healthy gate runs its hook, does not count: that is a flap, and the hook can
   only know the health its last probe saw).
3. `twice`: no guest was started twice, i.e. never two `guest_running` events without a
   `guest_stopped` between them.
The inputs are the event log and the final per-guest outcome; the printing code only reads the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from startgate.sim.events import SimEvent

Rule = Literal["should_run", "gated", "twice"]


@dataclass(frozen=True)
class Outcome:
    """How one guest ended a run, and what the checker needs to judge it."""

    vmid: int
    kind: str
    name: str
    node: str
    ha: str | None  # final CRM state, None when not HA-managed
    wanted: bool
    node_available: bool
    gates: tuple[str, ...]
    gates_healthy_at_end: bool
    running: bool

    @property
    def should_run(self) -> bool:
        """True when this guest must be running at the end."""
        return self.wanted and self.node_available and self.gates_healthy_at_end


@dataclass(frozen=True)
class Violation:
    """One broken property for one guest."""

    rule: Rule
    vmid: int
    detail: str


@dataclass(frozen=True)
class InvariantReport:
    """Every violation found; `ok` when there is none."""

    violations: tuple[Violation, ...]
    should_run: tuple[int, ...]
    running: tuple[int, ...]

    @property
    def ok(self) -> bool:
        """True when all three properties hold."""
        return not self.violations

    def by_rule(self, rule: Rule) -> list[Violation]:
        """The violations of one rule."""
        return [v for v in self.violations if v.rule == rule]


def check(events: list[SimEvent], outcomes: list[Outcome]) -> InvariantReport:
    """Judge a run from its events and final outcomes."""
    violations: list[Violation] = []
    for o in outcomes:
        if o.should_run and not o.running:
            why = f"ha state {o.ha}" if o.ha else "stopped"
            violations.append(
                Violation("should_run", o.vmid, f"{o.kind} {o.vmid} ({o.name}) should run but is {why}")
            )
    running: dict[int, bool] = {}
    for e in events:
        if e.vmid is None:
            continue
        if e.kind == "guest_running":
            if e.unhealthy_gates:
                gates = ", ".join(e.unhealthy_gates)
                violations.append(
                    Violation(
                        "gated", e.vmid, f"{e.vmid} started at +{e.t:.1f}s while gate(s) {gates} unhealthy"
                    )
                )
            if running.get(e.vmid):
                violations.append(
                    Violation("twice", e.vmid, f"{e.vmid} started again at +{e.t:.1f}s while running")
                )
            running[e.vmid] = True
        elif e.kind == "guest_stopped":
            running[e.vmid] = False
    return InvariantReport(
        tuple(violations),
        tuple(o.vmid for o in outcomes if o.should_run),
        tuple(o.vmid for o in outcomes if o.running),
    )
