"""Playing a whole outage on a `SimCluster` and judging it.

`run_outage(sim)` powers every node on and waits until the run settles: every wanted guest runs
(done), or nothing happened for the scenario's `quiet_s` while nothing is still on its way (a node
still booting, a controller still loading, a task younger than `quiet_s`), or `duration_s` passed.
It then records each guest's outcome and runs the invariant checker. A run that ends with
should-run guests stopped while tasks sit in a hook is reported as `stalled`: with a blocking hook
that is the deadlock startgate exists to avoid.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from startgate.sim.cluster import SimCluster
from startgate.sim.events import SimEvent
from startgate.sim.invariants import InvariantReport, Outcome, check

if TYPE_CHECKING:
    from startgate.sim.bustap import BusRecord

End = Literal["settled", "quiet", "deadline"]
# What ran of startgate (SimResult.startgate).
MODE_OFF = "off"
MODE_NO_COORDINATOR = "hook + agent, no coordinator"
MODE_ON = "hook, agent and coordinator"
TICK_S = 1.0


@dataclass(frozen=True)
class Progress:
    """A snapshot for the progress display."""

    t: float
    nodes_up: int
    nodes: int
    running: int
    wanted: int
    gates: dict[str, bool]
    held: int
    failed: int


@dataclass(frozen=True)
class SimResult:
    """Everything a run produced: its events, outcomes, invariants and how it ended."""

    scenario: str
    scale: float
    startgate: str  # "off", or which parts of startgate ran
    end: End
    sim_s: float
    wall_s: float
    events: list[SimEvent]
    outcomes: list[Outcome]
    invariants: InvariantReport
    blocked_tasks: list[str] = field(default_factory=list)  # start tasks still inside pre-start at the end
    notes: list[str] = field(default_factory=list)
    bus: BusRecord | None = None  # what reached the broker, when startgate ran

    @property
    def ok(self) -> bool:
        """True when the invariants hold."""
        return self.invariants.ok

    @property
    def stalled(self) -> bool:
        """True when should-run guests are stopped while start tasks are still stuck in their hook."""
        return bool(self.invariants.by_rule("should_run")) and bool(self.blocked_tasks)


def wanted(sim: SimCluster, vmid: int) -> bool:
    """Onboot (and not HA-managed), or HA-managed with requested state `started` in the scenario.

    The scenario's state, not the current one: leaving `error` passes through `disabled` (set by
    startgate's coordinator, or an admin), and a guest on its way back must not count as unwanted.
    """
    g = sim.guests[vmid]
    if g.ha is not None and g.ha.managed:
        spec = next((s for s in sim.scenario.guests if s.vmid == vmid), None)
        ha = spec.ha_spec() if spec is not None else None
        return (ha.state if ha is not None else g.ha.state) == "started"
    return g.onboot


def outcomes(sim: SimCluster) -> list[Outcome]:
    """Each guest's final state, as the invariant checker needs it."""
    out = []
    with sim.lock:
        any_up = any(n.up for n in sim.nodes.values())
        for g in sorted(sim.guests.values(), key=lambda g: g.vmid):
            gates = sim.member_gates(g)
            avail = any_up if g.ha_managed else sim.nodes[g.node].up
            out.append(
                Outcome(
                    vmid=g.vmid,
                    kind=g.label.split()[0],
                    name=g.name,
                    node=g.node,
                    ha=g.ha.crm_state if g.ha is not None and g.ha.managed else None,
                    wanted=wanted(sim, g.vmid),
                    node_available=avail,
                    gates=gates,
                    gates_healthy_at_end=all(sim.controllers[x].healthy_now() for x in gates),
                    running=g.running,
                )
            )
    return out


def _pending(sim: SimCluster) -> bool:
    """Something is still on its way: a node to boot, a controller loading, a young task."""
    now = sim.clock.elapsed()
    with sim.lock:
        if any(not n.up and not n.never_returns for n in sim.nodes.values()):
            return True
        # An HA service on a dead node waits for fencing and recovery (pve-ha-manager
        # src/PVE/HA/Manager.pm `next_state_fence`): the outage is not over until it moved.
        if any(n.up for n in sim.nodes.values()) and any(
            g.ha_managed and wanted(sim, g.vmid) and not sim.nodes[g.node].up for g in sim.guests.values()
        ):
            return True
    # A startall still running is a task: it counts below while young, or while it makes events.
    for ctrl in sim.controllers.values():
        if ctrl.state.listening and not ctrl.state.healthy and not ctrl.state.never_healthy:
            return True
        if any(f.from_s <= now < f.until_s for f in ctrl.state.flaps):
            return True
    # A call held by an API fault makes no event until it is answered; its caller is still at work.
    if any(f.from_s <= now < f.until_s + f.delay_s for f in sim.api.faults):
        return True
    young = now - sim.scenario.quiet_s
    return any(t.upid.starttime - sim.clock.epoch > young for t in sim.tasks.running())


def _all_wanted_running(sim: SimCluster) -> bool:
    with sim.lock:
        if any(not n.up and not n.never_returns for n in sim.nodes.values()):
            return False
        if any(n.up and not n.startall_done for n in sim.nodes.values()):
            return False
    return all(o.running for o in outcomes(sim) if o.wanted and o.node_available)


def progress(sim: SimCluster) -> Progress:
    """The current progress snapshot."""
    outs = outcomes(sim)
    with sim.lock:
        up = sum(1 for n in sim.nodes.values() if n.up)
    return Progress(
        t=sim.clock.elapsed(),
        nodes_up=up,
        nodes=len(sim.nodes),
        running=sum(1 for o in outs if o.running and o.wanted),
        wanted=sum(1 for o in outs if o.wanted),
        gates={name: c.state.healthy for name, c in sim.controllers.items()},
        held=len(sim.events.of_kind("held")),
        failed=len(sim.events.of_kind("start_failed")),
    )


def run_outage(
    sim: SimCluster,
    startgate: str = "off",
    on_progress: Callable[[Progress], None] | None = None,
    notes: list[str] | None = None,
) -> SimResult:
    """Boot every node of a started cluster and play the outage until it settles; judge it."""
    wall0 = time.monotonic()
    sim.clock.rebase()  # times in the timeline and in fault windows count from power-on
    t0 = sim.clock.elapsed()
    sim.boot_all()
    scn = sim.scenario
    end: End = "deadline"
    while sim.clock.elapsed() - t0 < scn.duration_s:
        if on_progress is not None:
            on_progress(progress(sim))
        if _all_wanted_running(sim):
            end = "settled"
            break
        if sim.clock.elapsed() - max(t0, sim.events.last_time()) >= scn.quiet_s and not _pending(sim):
            end = "quiet"
            break
        if not sim.clock.sleep(TICK_S):
            break
    if on_progress is not None:
        on_progress(progress(sim))
    events = sim.events.snapshot()
    outs = outcomes(sim)
    blocked = [t.text for t in sim.tasks.running() if t.step == "hook pre-start"]
    return SimResult(
        scenario=scn.name,
        scale=sim.clock.scale,
        startgate=startgate,
        end=end,
        sim_s=sim.clock.elapsed() - t0,
        wall_s=time.monotonic() - wall0,
        events=events,
        outcomes=outs,
        invariants=check(events, outs),
        blocked_tasks=blocked,
        notes=list(notes or []),
    )
