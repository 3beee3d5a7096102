"""Boot-time startall as pve-manager runs it: quorum, order, HA skip, serial or parallel."""

from __future__ import annotations

from collections.abc import Mapping

from startgate.sim.clock import SimClock
from startgate.sim.cluster import SimCluster
from startgate.sim.hooks import HookResult, InProcessHookRunner
from tests.sim.conftest import Api, SimFactory, scenario, write_hook

GUESTS = [
    {"vmid": 110, "node": "pve1", "disks": ["local-lvm"], "onboot": True},
    {"vmid": 104, "node": "pve1", "disks": ["local-lvm"], "onboot": True, "startup": "order=2"},
    {"vmid": 103, "node": "pve1", "disks": ["local-lvm"], "onboot": True, "startup": "order=1,up=7"},
    {"vmid": 102, "node": "pve1", "disks": ["local-lvm"], "onboot": True, "startup": "order=2"},
    {"vmid": 101, "node": "pve1", "disks": ["local-lvm"], "onboot": True, "ha": True},
    {"vmid": 107, "node": "pve1", "disks": ["local-lvm"], "onboot": False},
    {
        "vmid": 108,
        "type": "lxc",
        "node": "pve1",
        "disks": ["local-lvm"],
        "onboot": True,
        "startup": "order=1",
    },
]


def _startall_requests(sim: SimCluster, node: str) -> list[tuple[int, float]]:
    return [
        (e.vmid or 0, e.t)
        for e in sim.events.of_kind("start_requested")
        if e.source == "startall" and e.node == node
    ]


class SlowHook:
    """An in-process hook whose pre-start takes `seconds` simulated seconds."""

    def __init__(self, clock: SimClock, seconds: float) -> None:
        self.clock = clock
        self.seconds = seconds

    def __call__(self, vmid: int, phase: str, env: Mapping[str, str]) -> HookResult:
        """Sleep in pre-start, pass the rest."""
        if phase == "pre-start":
            self.clock.sleep(self.seconds)
        return HookResult(0, ())


def test_startall_orders_by_startup_then_vmid_and_skips_ha(make_sim: SimFactory) -> None:
    """Order 1 (VMIDs ascending), order 2, then guests without order; HA-managed and non-onboot skipped."""
    sim = make_sim(scenario(extra_guests=GUESTS))
    sim.boot_all()
    assert sim.clock.wait_for(lambda: sim.nodes["pve1"].startall_done, 200)
    order = [v for v, _ in _startall_requests(sim, "pve1")]
    assert order == [103, 108, 102, 104, 110]
    times = dict(_startall_requests(sim, "pve1"))
    assert times[108] - times[103] >= 7  # up=7 after VM 103
    assert {e.source for e in sim.events.of_kind("start_requested", vmid=101)} <= {"ha"}
    assert not sim.guests[107].running


def test_startall_waits_for_quorum(make_sim: SimFactory) -> None:
    """With one node of three up there is no quorum: startall waits and starts nothing."""
    sim = make_sim(scenario(extra_guests=GUESTS))
    sim.boot.boot("pve1", 1)
    sim.clock.sleep(30)
    assert sim.nodes["pve1"].up
    assert _startall_requests(sim, "pve1") == []
    sim.boot.boot("pve2", 1)
    assert sim.clock.wait_for(lambda: sim.nodes["pve1"].startall_done, 200)
    assert len(_startall_requests(sim, "pve1")) == 5


def _run_slow(make_sim: SimFactory, version: str) -> list[tuple[int, float]]:
    s = scenario(
        extra_guests=[g for g in GUESTS if g["vmid"] in {102, 104}], pve_manager=version, max_workers=4
    )
    holder: dict[str, SimCluster] = {}

    def slow(vmid: int, phase: str, env: Mapping[str, str]) -> HookResult:
        return SlowHook(holder["sim"].clock, 20)(vmid, phase, env)

    sim = make_sim(s, hook_runner=InProcessHookRunner(slow))
    holder["sim"] = sim
    vol = write_hook(sim, "exit 0")
    for vmid in (102, 104):
        sim.set_hookscript(vmid, vol)
    sim.boot_all()
    assert sim.clock.wait_for(lambda: sim.nodes["pve1"].startall_done, 300)
    return _startall_requests(sim, "pve1")


def test_serial_startall_waits_for_each_task(make_sim: SimFactory) -> None:
    """pve-manager <= 9.1.1: the next start is issued only after the previous task ended (+ up delay)."""
    (a, ta), (b, tb) = _run_slow(make_sim, "9.1.1")
    assert (a, b) == (102, 104)
    assert tb - ta >= 20


def test_parallel_startall_overlaps_one_order_level(make_sim: SimFactory) -> None:
    """pve-manager >= 9.1.2: starts of one order level overlap, spaced only by the up delay (3 s)."""
    (a, ta), (b, tb) = _run_slow(make_sim, "9.1.2")
    assert (a, b) == (102, 104)
    assert 3 <= tb - ta < 15


def test_startall_logs_failures_and_goes_on(make_sim: SimFactory) -> None:
    """A failed start is logged as "Starting VM <id> failed: ..." and the next guest still starts."""
    sim = make_sim(
        scenario(
            extra_guests=[
                {"vmid": 101, "node": "pve1", "disks": ["drbdstorage"], "onboot": True},
                {"vmid": 102, "node": "pve1", "disks": ["local-lvm"], "onboot": True},
            ]
        )
    )
    sim.boot_all()
    assert sim.clock.wait_for(lambda: sim.nodes["pve1"].startall_done, 200)
    api = Api(sim)
    task = api.data("GET", "/nodes/pve1/tasks", typefilter="startall")[0]
    lines = [x["t"] for x in api.data("GET", f"/nodes/pve1/tasks/{task['upid']}/log", limit=100)]
    assert "Starting VM 101" in lines
    assert (
        "Starting VM 101 failed: could not connect to any LINSTOR controller and no local DRBD device exists "
        "for vm-101-disk-0"
    ) in lines
    assert "Starting VM 102" in lines
    assert sim.guests[102].running
