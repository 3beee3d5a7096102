"""The HA stack: hastart, restart -> relocate -> error, error -> disabled -> started, LRM worker slots."""

from __future__ import annotations

from startgate.sim.cluster import SimCluster
from tests.sim.conftest import Api, SimFactory, scenario

HA_DRBD = {"vmid": 101, "node": "pve1", "disks": ["drbdstorage"], "ha": True}


def _ha_sim(make_sim: SimFactory, *extra: dict[str, object]) -> SimCluster:
    sim = make_sim(scenario(extra_guests=[HA_DRBD, *extra]))
    sim.controller_never_healthy("linstor")
    sim.boot_all()
    return sim


def test_refused_ha_start_goes_restart_relocate_error(make_sim: SimFactory) -> None:
    """Two tries on the first node, a migrate, two tries on the next, then `error` (defaults 1/1)."""
    sim = _ha_sim(make_sim)
    assert sim.clock.wait_for(lambda: sim.guest_state(101).ha_state == "error", 400)
    tries = [e.node for e in sim.events.of_kind("start_failed", vmid=101)]
    assert tries == ["pve1", "pve1", "pve2", "pve2"]
    details = [e.detail for e in sim.events.of_kind("ha_state", vmid=101)]
    assert "vm:101 started -> migrate" in details
    assert details[-1] == "vm:101 started -> error"
    assert any(
        d.startswith("recovery policy for service vm:101 failed, entering error state") for d in details
    )
    notes = [e.detail for e in sim.events.of_kind("note", vmid=101)]
    assert "restart policy: retry number 1 for service 'vm:101'" in notes
    first, last = (
        sim.events.of_kind("start_failed", vmid=101)[0].t,
        sim.events.of_kind("ha_state", vmid=101)[-1].t,
    )
    assert last - first < 90  # "within about a minute"


def test_error_state_needs_disabled_then_started(make_sim: SimFactory) -> None:
    """In `error` only `disabled` is accepted; then `started` queues a fresh start."""
    sim = _ha_sim(make_sim)
    assert sim.clock.wait_for(lambda: sim.guest_state(101).ha_state == "error", 400)
    api = Api(sim)
    r = api.call("PUT", "/cluster/ha/resources/vm:101", state="started")
    assert r.status_code == 500
    assert r.json()["message"] == "service 'vm:101' in error state, must be disabled and fixed first\n"
    status = {e["id"]: e for e in api.data("GET", "/cluster/ha/status/current")}
    assert status["service:vm:101"]["state"] == "error"
    assert status["service:vm:101"]["crm_state"] == "error"
    assert status["quorum"]["quorate"] == 1
    hastart = api.wait_task(
        sim.guest_state(101).node,
        api.data("POST", f"/nodes/{sim.guest_state(101).node}/qemu/101/status/start"),
    )
    assert hastart["type"] == "hastart"
    assert hastart["exitstatus"] == "command 'ha-manager set vm:101 --state started' failed: exit code 255"
    assert api.data("PUT", "/cluster/ha/resources/101", state="disabled") is None
    assert sim.clock.wait_for(lambda: sim.guest_state(101).ha_state == "stopped", 60)
    assert api.data("GET", "/cluster/ha/resources/vm:101")["state"] == "disabled"
    n = len(sim.events.of_kind("start_requested", vmid=101))
    api.data("PUT", "/cluster/ha/resources/vm:101", state="started")
    assert sim.clock.wait_for(lambda: len(sim.events.of_kind("start_requested", vmid=101)) > n, 60)


def test_api_start_of_ha_guest_is_an_hastart_task(make_sim: SimFactory) -> None:
    """POST start on an HA guest returns an `hastart` UPID that only sets the requested state."""
    sim = make_sim(
        scenario(
            extra_guests=[{"vmid": 102, "node": "pve2", "disks": ["local-lvm"], "ha": {"state": "stopped"}}]
        )
    )
    sim.boot_all()
    assert sim.clock.wait_for(lambda: all(n.startall_done for n in sim.nodes.values()), 60)
    api = Api(sim)
    upid = api.data("POST", "/nodes/pve2/qemu/102/status/start")
    assert ":hastart:102:" in upid
    st = api.wait_task("pve2", upid)
    assert st["exitstatus"] == "OK"
    log = [x["t"] for x in api.data("GET", f"/nodes/pve2/tasks/{upid}/log")]
    assert log[0] == "Requesting HA start for VM 102"
    assert api.data("GET", "/cluster/ha/resources/vm:102")["state"] == "started"
    assert sim.clock.wait_for(lambda: sim.guest_state(102).status == "running", 60)
    assert [e.source for e in sim.events.of_kind("guest_running", vmid=102)] == ["ha"]


def test_lrm_runs_at_most_max_workers_starts_per_node(make_sim: SimFactory) -> None:
    """With slow starts, one node's LRM never has more than 4 start tasks running at once."""
    guests = [{"vmid": 110 + i, "node": "pve1", "disks": ["local-lvm"], "ha": True} for i in range(7)]
    sim = make_sim(scenario(extra_guests=guests))
    vol = sim.install_snippet("pve1", "slow.sh", '#!/bin/sh\n[ "$2" = pre-start ] && sleep 0.3\nexit 0\n')
    for g in guests:
        sim.set_hookscript(int(str(g["vmid"])), vol)
    sim.boot_all()
    peak = 0

    def all_running() -> bool:
        nonlocal peak
        peak = max(peak, sum(1 for t in sim.tasks.running() if t.upid.type == "qmstart"))
        return all(sim.guests[int(str(g["vmid"]))].running for g in guests)

    assert sim.clock.wait_for(all_running, 400, poll=0.5)
    assert peak == 4
