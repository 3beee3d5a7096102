"""Random small outages, both startall modes, with every startgate process: the three properties hold.

Each example boots a random cluster (a LINSTOR controller VM, onboot/HA/container members, startup
orders) with the real hookscript, node agents and coordinators, and plays it until every guest
that should run runs. A run that ends any other way (stuck: a deadlock, or a guest never started)
fails, as does a guest started before its gate was healthy or started twice.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from startgate.bus.broker import MosquittoProcess
from startgate.sim import scenario as scn
from startgate.sim.play import play
from startgate.sim.startgate_side import StartgateSide

SCALE = 0.03
STORAGES = [
    {"id": "local", "type": "dir", "path": "/var/lib/vz", "content": ["snippets"]},
    {"id": "local-lvm", "type": "lvmthin", "content": ["images", "rootdir"]},
    {"id": "drbdstorage", "type": "drbd", "content": ["images", "rootdir"], "controller_gates": ["linstor"]},
]


@st.composite
def outages(draw: st.DrawFn, pve_manager: str) -> scn.Scenario:
    """A random 2-3 node cluster with a controller VM and 2-5 guests on DRBD or local storage."""
    names = [f"pve{i + 1}" for i in range(draw(st.integers(2, 3)))]
    nodes = [{"name": n, "boot_s": float(draw(st.integers(0, 40)))} for n in names]
    vmids = draw(st.lists(st.integers(100, 199), min_size=3, max_size=6, unique=True))
    ctrl, others = vmids[0], vmids[1:]
    ctrl_ha = draw(st.booleans())
    guests = [
        {"vmid": ctrl, "node": draw(st.sampled_from(names)), "disks": [f"drbdstorage:vm-{ctrl}-disk-1"]}
        | ({"ha": True} if ctrl_ha else {"onboot": True, "startup": "order=0"})
    ]
    for vmid in others:
        order = draw(st.one_of(st.none(), st.integers(1, 3)))
        guests.append(
            {
                "vmid": vmid,
                "type": draw(st.sampled_from(["qemu", "qemu", "lxc"])),
                "node": draw(st.sampled_from(names)),
                "disks": [draw(st.sampled_from(["drbdstorage", "drbdstorage", "local-lvm"]))],
                "onboot": True,
                "ha": draw(st.integers(0, 3)) == 0,
            }
            | ({} if order is None else {"startup": f"order={order},up={draw(st.integers(0, 10))}"})
        )
    storages = [dict(s) for s in STORAGES]
    storages[2]["keep_res"] = [f"vm-{ctrl}-disk-1"]
    return scn.Scenario.model_validate(
        {
            "name": "random",
            "pve_manager": pve_manager,
            "duration_s": 1200.0,
            "quiet_s": 150.0,
            "fence_after_s": 30.0,
            "nodes": nodes,
            "storages": storages,
            "gates": [
                {
                    "name": "linstor",
                    "vmid": ctrl,
                    "storages": ["drbdstorage"],
                    "boot_s": float(draw(st.integers(5, 60))),
                }
            ],
            "guests": guests,
        }
    )


@pytest.mark.parametrize("pve_manager", ["9.1.1", "9.1.2"])
def test_random_outages_keep_the_three_properties(session_broker: MosquittoProcess, pve_manager: str) -> None:
    """Serial (<= 9.1.1) and parallel (>= 9.1.2) startall: all run, none early, none twice, no deadlock."""

    @settings(max_examples=2, database=None, suppress_health_check=list(HealthCheck))
    @given(outages(pve_manager))
    def check(s: scn.Scenario) -> None:
        side = StartgateSide(broker_url=session_broker.url, topic_prefix=f"t{uuid.uuid4().hex[:12]}")
        result = play(s, with_startgate=True, scale=SCALE, side=side)
        problems = [v.detail for v in result.invariants.violations] + side.problems()
        assert result.ok, (problems, scn.dump(s))
        assert result.end == "settled", (result.end, scn.dump(s))

    check()
