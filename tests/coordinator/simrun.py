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
from startgate.sim.startgate_side import StartgateSide

COORDINATOR = "api:startgate@pve!coordinator"

THREE: dict[str, Any] = {
    "name": "three",
    "cluster": "c3",
    "quiet_s": 150.0,
    "duration_s": 900.0,
    "fence_after_s": 30.0,
    "nodes": [
        {"name": "pve1", "boot_s": 5.0},
        {"name": "pve2", "boot_s": 25.0},
        {"name": "pve3", "boot_s": 30.0},
    ],
    "storages": [
        {"id": "local", "type": "dir", "path": "/var/lib/vz", "content": ["snippets"]},
        {"id": "local-lvm", "type": "lvmthin", "content": ["images", "rootdir"]},
        {
            "id": "drbdstorage",
            "type": "drbd",
            "content": ["images", "rootdir"],
            "controller_gates": ["linstor"],
            "keep_res": ["vm-100-disk-1"],
        },
    ],
    "gates": [
        {
            "name": "linstor",
            "vmid": 100,
            "storages": ["drbdstorage"],
            "boot_s": 30.0,
            "satellite_s": 5.0,
            "connect_s": 5.0,
        }
    ],
    "guests": [
        {"vmid": 100, "node": "pve2", "disks": ["drbdstorage:vm-100-disk-1"], "ha": True},
        {"vmid": 101, "node": "pve1", "disks": ["drbdstorage"], "onboot": True, "startup": "order=1,up=10"},
        {"vmid": 102, "node": "pve1", "disks": ["drbdstorage"], "onboot": True, "startup": "order=2"},
        {"vmid": 103, "node": "pve2", "disks": ["drbdstorage"], "onboot": True},
        {"vmid": 104, "node": "pve3", "disks": ["drbdstorage"], "ha": True},
        {"vmid": 105, "node": "pve3", "type": "lxc", "disks": ["drbdstorage"], "onboot": True},
        {"vmid": 106, "node": "pve3", "disks": ["drbdstorage"], "onboot": True, "startup": "order=1,up=5"},
        {"vmid": 107, "node": "pve3", "disks": ["drbdstorage"], "onboot": True, "startup": "order=2"},
    ],
}


def three(**changes: Any) -> scn.Scenario:
    """The three-node scenario (pve1 boots first, so its coordinator leads; the controller is on pve2)."""
    return scn.Scenario.model_validate(THREE | changes)


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
