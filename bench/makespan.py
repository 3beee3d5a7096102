"""Cold-start makespan of 8 nodes x 40 guests over its lower bound, with the coordinator and naive.

`python -m bench.makespan [--json] [--quick]`. A simulated cluster (8 nodes, 40 DRBD guests each,
the LINSTOR controller VM on pve1) loses power and boots. With startgate: the real coordinator
(in-process, the real Proxmox adapter over HTTPS) finds the starts that failed in the storage
plugin and re-issues them once the gate is healthy, `max_parallel_starts` per node. Naive: the
blocking hook (startgate/sim/naive_hook.py) holds each start until the controller answers.

Lower bound = the time the gate turned healthy + the largest per-node sum of start durations
divided by max_parallel_starts (a start's duration: the API request to the guest running). The
satellites connect the moment the controller is healthy (connect_s 0), so node readiness adds
nothing the bound leaves out. The makespan is power-on to the last guest running, in simulated
seconds (scale 1: real seconds, so the coordinator's own delays count in full).
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.report import Figure, emit, parse_args
from startgate.bus.broker import MosquittoProcess
from startgate.coordinator.testing import Running, sim_config
from startgate.sim import naive_hook
from startgate.sim import scenario as scn
from startgate.sim.cluster import SimCluster
from startgate.sim.events import SimEvent
from startgate.sim.runner import run_outage

PARALLEL = 4
STORAGES = [
    {"id": "local", "type": "dir", "path": "/var/lib/vz", "content": ["snippets"]},
    {"id": "local-lvm", "type": "lvmthin", "content": ["images", "rootdir"]},
    {"id": "drbdstorage", "type": "drbd", "content": ["images", "rootdir"], "controller_gates": ["linstor"]},
]


def scenario(nodes: int, per_node: int) -> scn.Scenario:
    """`nodes` nodes with `per_node` onboot DRBD guests each; the controller VM first on pve1."""
    guests: list[dict[str, Any]] = [
        {"vmid": 100, "node": "pve1", "disks": ["local-lvm"], "onboot": True, "startup": "order=0"}
    ]
    guests.extend(
        {"vmid": 1000 + n * per_node + i, "node": f"pve{n + 1}", "disks": ["drbdstorage"], "onboot": True}
        for n in range(nodes)
        for i in range(per_node)
    )
    return scn.Scenario.model_validate(
        {
            "name": "makespan",
            "duration_s": 900.0,
            "quiet_s": 60.0,
            "nodes": [{"name": f"pve{n + 1}", "boot_s": 5.0} for n in range(nodes)],
            "storages": STORAGES,
            "gates": [{"name": "linstor", "vmid": 100, "storages": ["drbdstorage"], "boot_s": 20.0,
                       "satellite_s": 0.0, "connect_s": 0.0}],
            "guests": guests,
        }
    )  # fmt: skip


def bound(events: list[SimEvent], nodes: list[str]) -> tuple[float, float]:
    """(makespan, lower bound) from a run's events, in simulated seconds."""
    healthy = next(e.t for e in events if e.kind == "gate_healthy")
    requested: dict[int, float] = {}
    per_node: dict[str, float] = defaultdict(float)
    last = 0.0
    for e in events:
        if e.vmid is None or e.vmid == 100:
            continue
        if e.kind == "start_requested":
            requested[e.vmid] = e.t
        elif e.kind == "guest_running":
            per_node[e.node] += e.t - requested.get(e.vmid, e.t)
            last = max(last, e.t)
    return last, healthy + max(per_node.get(n, 0.0) for n in nodes) / PARALLEL


def with_startgate(s: scn.Scenario, scale: float) -> tuple[float, float, bool]:
    """Play with the real coordinator; (makespan, bound, invariants ok)."""
    with tempfile.TemporaryDirectory() as tmp, MosquittoProcess(Path(tmp) / "mq") as broker:
        sim = SimCluster.from_scenario(s, scale=scale).start()
        try:
            cfg = sim_config(
                sim, node="pve1", brokers=[broker.url], topic_prefix="bench", root=Path(tmp),
                max_parallel_starts=PARALLEL, reconcile_interval_s=1.0,
            )  # fmt: skip
            with Running(cfg):
                result = run_outage(sim, startgate="on")
        finally:
            sim.close()
    makespan, lower = bound(result.events, [n.name for n in s.nodes])
    return makespan, lower, result.ok and result.end == "settled"


def naive(s: scn.Scenario, scale: float) -> tuple[float, float, str]:
    """Play with the naive blocking hook; (makespan, bound, how it ended)."""
    with SimCluster.from_scenario(s, scale=scale) as sim:
        naive_hook.attach(sim, in_process=True, poll_s=1.0)
        result = run_outage(sim, startgate="naive hook")
    makespan, lower = bound(result.events, [n.name for n in s.nodes])
    end = "stalled" if result.stalled else result.end
    return makespan, lower, end


def main() -> None:
    """Measure and print the figures."""
    args = parse_args(__doc__ or "")
    s = scenario(8, 10 if args.quick else 40)
    makespan, lower, ok = with_startgate(s, 1.0)
    n_make, n_lower, n_end = naive(s, 0.05)
    ratio = makespan / lower
    emit(
        [
            Figure(f"makespan / lower bound, {len(s.guests) - 1} guests, coordinator", ratio, "x", "<= 1.10",
                   f"{makespan:.1f} s vs bound {lower:.1f} s; properties {'held' if ok else 'BROKEN'}",
                   ratio <= 1.10 and ok),
            Figure("makespan / lower bound, same, naive blocking hook", n_make / n_lower, "x", "",
                   f"{n_make:.1f} s vs bound {n_lower:.1f} s; ended {n_end}"),
        ],
        args.json,
    )  # fmt: skip


if __name__ == "__main__":
    main()
