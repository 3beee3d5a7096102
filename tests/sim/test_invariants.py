"""The invariant checker judges runs from events and outcomes; faults like a lost node are survived by HA."""

from __future__ import annotations

from collections.abc import Mapping

from startgate.sim.cluster import SimCluster
from startgate.sim.events import SimEvent
from startgate.sim.hooks import HookResult, InProcessHookRunner
from startgate.sim.invariants import Outcome, check
from startgate.sim.runner import run_outage
from tests.sim.conftest import Api, SimFactory, scenario, write_hook


def _outcome(vmid: int, *, running: bool, wanted: bool = True, healthy: bool = True) -> Outcome:
    return Outcome(vmid, "VM", f"vm{vmid}", "pve1", None, wanted, True, ("linstor",), healthy, running)


def test_checker_flags_each_rule() -> None:
    """A stopped should-run guest, a start with an unhealthy gate, and a double start are each reported."""
    events = [
        SimEvent(10.0, "guest_running", vmid=101, unhealthy_gates=("linstor",)),
        SimEvent(12.0, "guest_running", vmid=102),
        SimEvent(13.0, "guest_running", vmid=102),
        SimEvent(14.0, "guest_running", vmid=103),
        SimEvent(15.0, "guest_stopped", vmid=103),
        SimEvent(16.0, "guest_running", vmid=103),
    ]
    outs = [_outcome(101, running=True), _outcome(102, running=True), _outcome(103, running=True)]
    outs += [
        _outcome(104, running=False),
        _outcome(105, running=False, healthy=False),
        _outcome(106, running=False, wanted=False),
    ]
    report = check(events, outs)
    assert [v.vmid for v in report.by_rule("gated")] == [101]
    assert [v.vmid for v in report.by_rule("twice")] == [102]
    assert [v.vmid for v in report.by_rule("should_run")] == [104]
    assert not report.ok
    assert check([SimEvent(1.0, "guest_running", vmid=101)], [_outcome(101, running=True)]).ok


def test_ha_guest_of_a_node_that_never_returns_is_recovered(make_sim: SimFactory) -> None:
    """With pve3 gone for good, its HA guest is fenced and recovered to another node and runs."""
    s = scenario(
        extra_guests=[
            {"vmid": 101, "node": "pve3", "disks": ["local-lvm"], "ha": True},
            {"vmid": 102, "node": "pve3", "disks": ["local-lvm"], "onboot": True},
        ],
        faults=[{"kind": "node_never_returns", "node": "pve3"}],
        quiet_s=60,
        fence_after_s=60,
    )
    sim = make_sim(s)
    result = run_outage(sim)
    final = {o.vmid: o for o in result.outcomes}
    assert final[101].running
    assert final[101].node != "pve3"
    assert not final[102].running
    assert not final[102].should_run  # its node never came back
    assert "vm:101 fence -> recovery" in [e.detail for e in result.events if e.kind == "ha_state"]
    assert result.ok


def test_a_run_is_not_quiet_while_an_api_fault_holds_calls(make_sim: SimFactory) -> None:
    """A call held by an API fault makes no event, yet its caller is at work: not `quiet` until answered."""
    s = scenario(
        extra_guests=[{"vmid": 101, "node": "pve2", "disks": ["drbdstorage"], "onboot": True}],
        faults=[
            {"kind": "controller_never_healthy", "gate": "linstor"},
            {"kind": "api_errors", "from_s": 0, "until_s": 50, "delay_s": 100, "status": 504},
        ],
        quiet_s=20,
        duration_s=600,
    )
    result = run_outage(make_sim(s))
    assert result.end == "quiet"
    assert result.sim_s >= 150


def test_a_member_started_past_an_unhealthy_gate_is_flagged(make_sim: SimFactory) -> None:
    """A member with a local disk and no hook starts while its gate is down: the run names it `gated`."""
    s = scenario(
        gates=[{"name": "linstor", "vmid": 100, "tags": ["needs-linstor"], "boot_s": 30.0}],
        extra_guests=[
            {"vmid": 101, "node": "pve2", "disks": ["local-lvm"], "onboot": True, "tags": ["needs-linstor"]}
        ],
        faults=[{"kind": "controller_never_healthy", "gate": "linstor"}],
        quiet_s=20,
    )
    result = run_outage(make_sim(s))
    assert [v.vmid for v in result.invariants.by_rule("gated")] == [101]
    running = next(e for e in result.events if e.kind == "guest_running" and e.vmid == 101)
    assert running.unhealthy_gates == ("linstor",)


def _tag_member_started_by_hand(make_sim: SimFactory, *, down_before: bool) -> SimEvent:
    """Start tag member 101 (local disk) once VM 100's controller is healthy; its hook allows and,
    unless `down_before`, takes the controller down while it runs; with it, the controller is down first."""
    s = scenario(
        gates=[{"name": "linstor", "vmid": 100, "tags": ["needs-linstor"], "boot_s": 5.0}],
        extra_guests=[{"vmid": 101, "node": "pve2", "disks": ["local-lvm"], "tags": ["needs-linstor"]}],
    )
    holder: dict[str, SimCluster] = {}

    def allow(vmid: int, phase: str, env: Mapping[str, str]) -> HookResult:
        if phase == "pre-start":
            holder["sim"].controller_never_healthy("linstor")
            holder["sim"].clock.sleep(2.0)  # the monitor's tick; /health is 500 now either way
        return HookResult(0, ())

    sim = make_sim(s, hook_runner=InProcessHookRunner(allow))
    holder["sim"] = sim
    sim.set_hookscript(101, write_hook(sim, "exit 0"))
    sim.boot_all()
    api = Api(sim)
    assert sim.clock.wait_for(lambda: all(n.startall_done for n in sim.nodes.values()), 120)
    api.wait_task("pve1", api.data("POST", "/nodes/pve1/qemu/100/status/start"))
    assert sim.clock.wait_for(lambda: not sim.unhealthy_gates(sim.guests[101]), 120)
    if down_before:
        sim.controller_never_healthy("linstor")
    api.wait_task("pve2", api.data("POST", "/nodes/pve2/qemu/101/status/start"))
    return next(e for e in sim.events.snapshot() if e.kind == "guest_running" and e.vmid == 101)


def test_a_gate_that_fails_while_a_start_runs_its_hook_is_a_flap_not_gated(make_sim: SimFactory) -> None:
    """A start begun on a healthy gate whose controller fails during the hook carries no unhealthy gate."""
    assert _tag_member_started_by_hand(make_sim, down_before=False).unhealthy_gates == ()


def test_a_start_begun_and_let_through_on_a_failed_gate_is_gated(make_sim: SimFactory) -> None:
    """A hook that lets a start through while the gate was down since before it began is flagged."""
    assert _tag_member_started_by_hand(make_sim, down_before=True).unhealthy_gates == ("linstor",)
