"""Running a scenario with every startgate process on the sim while a test interferes (not a test module)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from startgate.bus import messages
from startgate.sim import scenario as scn
from startgate.sim.cluster import SimCluster
from startgate.sim.runner import MODE_ON, SimResult, run_outage
from startgate.sim.soak import base_scenario
from startgate.sim.startgate_side import StartgateSide

COORDINATOR = "api:startgate@pve!coordinator"


def three(**changes: Any) -> scn.Scenario:
    """The soak cluster (pve1 boots first, so its coordinator leads; the controller is on pve2), as "c3"."""
    base = base_scenario().model_dump(mode="json")
    return scn.Scenario.model_validate(base | {"name": "three", "description": "", "cluster": "c3"} | changes)


@dataclass
class Run:
    """A scenario playing on a thread, with the startgate side, while the test interferes."""

    sim: SimCluster
    side: StartgateSide
    result: list[SimResult] = field(default_factory=list)

    def events(self) -> list[Any]:
        """The sim's events so far."""
        return self.sim.events.snapshot()

    def coordinator_starts(self) -> list[Any]:
        """Start requests the coordinators made so far."""
        return [e for e in self.events() if e.kind == "start_requested" and e.source == COORDINATOR]

    def leaders(self) -> list[messages.CoordinatorStatus]:
        """Every leader status seen on the bus, in order."""
        return [
            m
            for m in self.side.bus().of(messages.CoordinatorStatus)
            if isinstance(m, messages.CoordinatorStatus) and m.state == "leader"
        ]

    def wait(self, pred: Callable[[], bool], timeout: float = 60.0) -> bool:
        """Poll `pred` in real seconds."""
        pause = threading.Event()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            pause.wait(0.05)
        return pred()


@contextmanager
def playing(scenario: scn.Scenario, scale: float, broker_url: str | None = None) -> Iterator[Run]:
    """Play `scenario` with hooks, agents and coordinators; the result is in `run.result` after the block."""
    side = StartgateSide(
        broker_url=broker_url, topic_prefix=f"t{uuid.uuid4().hex[:12]}" if broker_url else None
    )
    with SimCluster.from_scenario(scenario, scale=scale) as sim:
        run = Run(sim, side)
        side.start(sim)
        thread = threading.Thread(
            target=lambda: run.result.append(run_outage(sim, startgate=MODE_ON)), daemon=True
        )
        thread.start()
        try:
            yield run
            thread.join(120.0)
        finally:
            side.stop()
    assert run.result, "the run did not end"


def check(run: Run) -> SimResult:
    """The three properties hold and every guest that should run runs."""
    result = run.result[0]
    assert result.ok, [v.detail for v in result.invariants.violations] + run.side.problems()
    assert result.end == "settled", result.end
    return result
