"""A naive blocking hook deadlocks or stalls some cluster: hypothesis finds one; a kept one stays a fixture.

The naive hook (startgate/sim/naive_hook.py) blocks `pre-start` until the LINSTOR controller
answers. Random clusters (1-8 nodes, up to 60 guests, random orders, HA flags, boot times, both
startall modes) are played with it until one ends with guests that should run still stopped and
start tasks still stuck in the hook. tests/sim/fixtures/naive-deadlock.toml is such a case, found
this way, reduced, and kept as a regression fixture; naive-deadlock-ha.toml is the HA variant
(every LRM worker slot held by a blocked member while the controller VM waits for one).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, find, settings
from hypothesis import strategies as st

from startgate.sim import naive_hook
from startgate.sim import scenario as scn
from startgate.sim.cluster import SimCluster
from startgate.sim.runner import SimResult, run_outage

FIXTURES = Path(__file__).parent / "fixtures"
SCALE = 0.004
STORAGES = [
    {"id": "local", "type": "dir", "path": "/var/lib/vz", "content": ["snippets"]},
    {"id": "local-lvm", "type": "lvmthin", "content": ["images", "rootdir"]},
    {"id": "drbdstorage", "type": "drbd", "content": ["images", "rootdir"], "controller_gates": ["linstor"]},
]


@st.composite
def clusters(draw: st.DrawFn) -> scn.Scenario:
    """A random cluster with a LINSTOR controller VM and guests on DRBD and local storage."""
    n_nodes = draw(st.integers(1, 8))
    nodes = [{"name": f"pve{i + 1}", "boot_s": float(draw(st.integers(0, 60)))} for i in range(n_nodes)]
    names = [n["name"] for n in nodes]
    n_guests = draw(st.integers(1, 60))
    vmids = draw(st.lists(st.integers(100, 999), min_size=n_guests + 1, max_size=n_guests + 1, unique=True))
    ctrl_vmid, others = vmids[0], vmids[1:]
    ctrl_ha = draw(st.booleans())
    order = st.one_of(st.none(), st.integers(1, 4))

    def startup(o: int | None) -> dict[str, str]:
        return {} if o is None else {"startup": f"order={o}"}

    guests = [
        {
            "vmid": ctrl_vmid,
            "node": draw(st.sampled_from(names)),
            "disks": [f"drbdstorage:vm-{ctrl_vmid}-disk-1"],
            "onboot": not ctrl_ha,
            "ha": ctrl_ha,
            **startup(draw(order)),
        }
    ]
    for vmid in others:
        lxc = draw(st.integers(0, 9)) == 0
        guests.append(
            {
                "vmid": vmid,
                "type": "lxc" if lxc else "qemu",
                "node": draw(st.sampled_from(names)),
                "disks": [draw(st.sampled_from(["drbdstorage", "drbdstorage", "drbdstorage", "local-lvm"]))],
                "onboot": draw(st.integers(0, 4)) > 0,
                "ha": draw(st.integers(0, 2)) == 0,
                **startup(draw(order)),
            }
        )
    storages = [dict(s) for s in STORAGES]
    storages[2]["keep_res"] = [f"vm-{ctrl_vmid}-disk-1"]
    return scn.Scenario.model_validate(
        {
            "name": "naive-random",
            "pve_manager": draw(st.sampled_from(["9.1.1", "9.1.2"])),
            "duration_s": 900.0,
            "quiet_s": 60.0,
            "nodes": nodes,
            "storages": storages,
            "gates": [
                {
                    "name": "linstor",
                    "vmid": ctrl_vmid,
                    "storages": ["drbdstorage"],
                    "boot_s": float(draw(st.integers(5, 90))),
                }
            ],
            "guests": guests,
        }
    )


def play_naive(s: scn.Scenario, scale: float = SCALE, in_process: bool = True) -> SimResult:
    """Play the outage with the naive hook on every gate member."""
    with SimCluster.from_scenario(s, scale=scale) as sim:
        naive_hook.attach(sim, in_process=in_process, poll_s=5.0)
        return run_outage(sim, startgate="naive hook")


def test_hypothesis_finds_a_naive_hook_deadlock() -> None:
    """Among random clusters, some end with should-run guests stopped and starts stuck in the hook."""
    found = find(
        clusters(),
        lambda s: play_naive(s).stalled,
        settings=settings(
            max_examples=25,
            derandomize=True,
            phases=[Phase.generate],
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    assert len(found.guests) >= 2


@pytest.mark.parametrize("name", ["naive-deadlock.toml", "naive-deadlock-ha.toml"])
def test_kept_deadlock_fixtures_still_deadlock(name: str) -> None:
    """Each kept case stalls with the naive hook: the controller VM never runs, member starts stay blocked."""
    s = scn.load(FIXTURES / name)
    result = play_naive(s)
    assert result.stalled
    assert s.gates[0].vmid in {v.vmid for v in result.invariants.by_rule("should_run")}
    assert not result.invariants.by_rule("gated")
    assert not any(e.kind == "gate_healthy" for e in result.events)


def test_naive_hook_script_blocks_as_a_real_subprocess() -> None:
    """The shipped naive hook, run as a real hookscript process, produces the same startall deadlock."""
    result = play_naive(scn.load(FIXTURES / "naive-deadlock.toml"), in_process=False)
    assert result.stalled
    assert result.blocked_tasks
