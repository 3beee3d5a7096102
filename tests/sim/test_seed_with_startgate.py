"""The seed outage with the real hookscript and node agents (no coordinator) on every simulated node."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from startgate.bus import messages
from startgate.bus.broker import MosquittoProcess
from startgate.cli import app
from startgate.sim import scenario as scn
from startgate.sim.play import play, seed_scenario
from startgate.sim.runner import MODE_NO_COORDINATOR, SimResult
from startgate.sim.startgate_side import StartgateSide, command_exists

SCALE = 0.03  # real processes run in real time: a hook run of ~0.1-1 s is 3-30 simulated s here
DRBD_VMS = {101, 102, 103, 104, 107, 108}
HA_VMS = {104, 107}


def _seed(quiet_s: float = 40.0) -> scn.Scenario:
    """The seed scenario, ending sooner once nothing happens (the outage itself is unchanged)."""
    return scn.load(seed_scenario()).model_copy(update={"quiet_s": quiet_s})


@pytest.fixture(scope="module")
def result(session_broker: MosquittoProcess) -> SimResult:
    """One run of the seed outage with hook and agents (coordinator turned off), judged."""
    side = StartgateSide(
        broker_url=session_broker.url, coordinator=False, topic_prefix=f"t{uuid.uuid4().hex[:12]}"
    )
    return play(_seed(), with_startgate=True, scale=SCALE, side=side)


def _gate_healthy_at(result: SimResult) -> float:
    return next((e.t for e in result.events if e.kind == "gate_healthy"), float("inf"))


def test_every_drbd_vm_is_refused_by_the_real_hook_while_the_gate_is_down(result: SimResult) -> None:
    """Each DRBD VM's pre-start ran the real hook, exited 1 before the gate was healthy, and was held."""
    healthy_at = _gate_healthy_at(result)
    for vmid in DRBD_VMS:
        hooks = [e for e in result.events if e.kind == "hook" and e.vmid == vmid and "pre-start" in e.detail]
        assert hooks, f"no pre-start hook ran for {vmid}"
        assert all(e.detail == "pre-start exit 1" for e in hooks if e.t < healthy_at), vmid
        held = [e for e in result.events if e.kind == "held" and e.vmid == vmid]
        assert held, f"{vmid} was never held"
        assert held[0].stage == "hook"
        assert held[0].detail.startswith(
            f'startgate: holding start of VM {vmid} until gate "linstor" is healthy'
        )
    assert not result.invariants.by_rule("gated")
    assert not result.invariants.by_rule("twice")


def test_held_records_reach_the_broker_and_validate(result: SimResult) -> None:
    """A retained held/<vmid> per DRBD VM arrives on the broker, valid per startgate.bus.messages."""
    assert result.bus is not None
    assert result.bus.invalid == []
    held = result.bus.held()
    assert set(held) >= DRBD_VMS
    for vmid in DRBD_VMS:
        record = held[vmid]
        assert isinstance(record, messages.HeldStart)
        assert record.type == "qemu"
        assert record.gates == ["linstor"]
        assert record.ha == (vmid in HA_VMS)
        assert record.source == "hook"
    holds = {e.vmid for e in result.bus.guest_events() if e.decision == "hold"}
    assert holds == DRBD_VMS


def test_controller_vm_is_never_held_and_the_non_member_runs(result: SimResult) -> None:
    """VM 100 (the gate's own VM) and VM 106 (no DRBD disk) have no hook, are never held, and run."""
    final = {o.vmid: o for o in result.outcomes}
    for vmid in (100, 106):
        assert final[vmid].running
        assert not [e for e in result.events if e.vmid == vmid and e.kind in {"held", "hook", "start_failed"}]
    assert result.bus is not None
    assert not {100, 106} & set(result.bus.held())


def test_container_fails_in_the_storage_plugin_before_its_hook(result: SimResult) -> None:
    """CT 105 activates its DRBD volume before pre-start: the plugin fails it and the hook never runs."""
    failed = [e for e in result.events if e.kind == "start_failed" and e.vmid == 105]
    assert failed
    assert failed[0].stage == "volumes-before-hook"
    assert "could not connect to any LINSTOR controller" in failed[0].detail
    assert not [e for e in result.events if e.vmid == 105 and e.kind in {"hook", "held"}]
    assert result.bus is not None
    assert not result.bus.guest_events(105)


def test_nothing_reissues_held_starts_without_a_coordinator(result: SimResult) -> None:
    """The run says it had no coordinator, and the held non-HA guests are left stopped (exit 1)."""
    assert result.startgate == MODE_NO_COORDINATOR
    assert any("coordinator: NOT available" in n for n in result.notes)
    assert not result.ok
    stopped = {v.vmid for v in result.invariants.by_rule("should_run")}
    assert {101, 102, 103, 105, 108} <= stopped
    assert result.bus is not None
    assert result.bus.nodes_seen_online() == ["pve1", "pve2", "pve3", "pve4"]
    boots = {m.node for m in result.bus.of(messages.NodeEvent) if isinstance(m, messages.NodeEvent)}
    assert boots == {"pve1", "pve2", "pve3", "pve4"}


def test_cli_run_with_startgate_reads_well(tmp_path: Path) -> None:
    """`startgate simulate` with startgate: exit 0 (1 naming what is missing without a coordinator)."""
    path = tmp_path / "seed.toml"
    path.write_text(scn.dump(_seed(quiet_s=150.0)))  # the coordinator runs in real time: give it room
    res = CliRunner().invoke(app, ["simulate", str(path), "--scale", "0.02"])
    assert res.exit_code == (0 if command_exists("coordinator") else 1), res.output
    out = res.output
    assert "Timeline (simulated seconds since power-on):" in out
    assert "HELD (hook exit 1)" in out
    assert "before pre-start" in out
    for check in ("every guest that should run", "none started before", "none started twice"):
        assert check in out
    if not command_exists("coordinator"):
        assert "coordinator: NOT available yet" in out
        assert "nothing re-issued it: there is no coordinator yet" in out
    assert all(len(line) <= 100 for line in res.stdout.splitlines()), max(res.stdout.splitlines(), key=len)
