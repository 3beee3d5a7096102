"""Leadership and service life cycle: only the leader acts; takeover, loss, shutdown, systemd, heartbeats."""

from __future__ import annotations

from startgate.bus.messages import CoordinatorStatus, GateHealth, HeldStart, NodeStatus
from startgate.bus.topics import HELD
from startgate.core.actions import ClearRetained, Notify, ObserveGuest, Persist, Reconcile, StartGuest
from startgate.core.events import BusConnected, LockAcquired, LockLost, Shutdown, StartResult, Tick
from tests.core.helpers import Run, guest_event, held_record, observed, of, published, settings


def test_a_follower_probes_and_records_but_never_acts() -> None:
    """Held starts on a follower stay held however healthy the gate; nothing is published."""
    run = Run(leader=False)
    run.hold(101)
    run.healthy()
    run.send(Tick(), after=100.0)
    kinds = {type(a).__name__ for a in run.actions}
    assert kinds <= {"ProbeGate", "Notify", "Persist", "Wake", "Log"}
    assert run.entry(101).state == "held"


def test_taking_over_republishes_reconciles_and_looks_before_releasing() -> None:
    """A new leader publishes its state, reconciles, and releases nothing until each guest was observed."""
    run = Run(leader=False)
    run.hold(101)
    run.healthy()
    actions = run.send(LockAcquired(), after=1.0)
    assert Reconcile("became leader") in actions
    assert [m.vmid for m in published(actions, HeldStart)] == [101]
    assert [m.gate for m in published(actions, GateHealth)] == ["linstor"]
    assert [m.node for m in published(actions, CoordinatorStatus)] == ["pve1"]
    assert of(actions, StartGuest) == []
    assert run.entry(101).needs_check
    assert of(run.send(observed(101), after=0.5), StartGuest) == [StartGuest(101, "pve1", "qemu")]


def test_losing_the_lock_stops_everything_and_forgets_what_was_in_flight() -> None:
    """After LockLost late results are ignored, nothing is released, and in-flight entries need a look."""
    run = Run()
    run.hold(101)
    run.healthy()
    assert run.entry(101).state == "releasing"
    run.send(LockLost("lock taken over"))
    e = run.entry(101)
    assert (e.state, e.needs_check) == ("held", True)
    late = run.send(StartResult(vmid=101, upid="UPID:x:"))
    assert {type(a).__name__ for a in late} == {"Log"}
    run.send(observed(101), after=1.0)
    assert of(run.send(Tick(), after=100.0), StartGuest) == []


def test_started_tells_systemd_ready_with_a_status_line() -> None:
    """READY=1 once the service says it is connected and restored."""
    run = Run(leader=False)
    (n,) = [a for a in run.actions if isinstance(a, Notify)]
    assert n.ready
    assert n.status == "follower; gates: linstor unhealthy; held 0 (0 releasing, 0 failed)"


def test_status_changes_reach_systemd_on_the_next_tick() -> None:
    """The STATUS= line follows leadership, gates and counts."""
    run = Run()
    run.hold(101)
    run.healthy()
    notes = of(run.send(Tick(), after=1.0), Notify)
    assert [n.status for n in notes] == ["leader; gates: linstor healthy; held 1 (1 releasing, 0 failed)"]
    assert of(run.send(Tick(), after=1.0), Notify) == []


def test_shutdown_publishes_stopped_persists_and_stops_acting() -> None:
    """SIGTERM: the leader says it stopped; nothing is released afterwards."""
    run = Run()
    run.hold(101)
    actions = run.send(Shutdown())
    (status,) = published(actions, CoordinatorStatus)
    assert status.state == "stopped"
    assert Persist() in actions
    assert of(actions, Notify)[0].stopping
    assert of(run.healthy(), StartGuest) == []


def test_a_broker_that_reconnects_gets_all_retained_state_again() -> None:
    """BusConnected republishes held records, gate health and the coordinator status."""
    run = Run()
    run.hold(101)
    run.hold(102)
    actions = run.send(BusConnected("mqtt://pve2:1883"))
    assert sorted(m.vmid for m in published(actions, HeldStart)) == [101, 102]
    assert published(actions, GateHealth)
    assert published(actions, CoordinatorStatus)


def test_a_new_leader_clears_the_records_of_starts_that_ended_while_it_followed() -> None:
    """A start that succeeded while we followed (its leader died before clearing it): cleared on takeover."""
    run = Run(leader=False)
    run.hold(101)
    run.hold(102)
    run.send(guest_event(101, "post-start", time=run.now + 5.0), after=5.0)
    assert 101 not in run.state.held
    actions = run.send(LockAcquired(), after=1.0)
    assert of(actions, ClearRetained) == [ClearRetained(HELD, 101)]
    assert [m.vmid for m in published(actions, HeldStart)] == [102]


def test_a_new_leader_clears_a_stale_record_it_first_saw_as_a_follower() -> None:
    """A follower hears a guest ran, then gets the dead leader's record of it: cleared when it leads."""
    run = Run(leader=False)
    run.send(guest_event(101, "post-start", time=run.now + 5.0), after=5.0)
    stale = held_record(101, source="coordinator", state="releasing", reason="released", time=run.now - 10.0)
    assert of(run.send(stale, after=0.5), ClearRetained) == []  # a follower clears nothing
    assert 101 not in run.state.held
    actions = run.send(LockAcquired(), after=1.0)
    assert of(actions, ClearRetained) == [ClearRetained(HELD, 101)]


def test_a_reconnected_broker_has_finished_records_cleared_again() -> None:
    """A broker restored from its disk file may bring back cleared records: BusConnected clears them again."""
    run = Run()
    run.hold(101)
    run.hold(102)
    run.send(guest_event(101, "post-start", time=run.now + 5.0), after=5.0)
    actions = run.send(BusConnected("mqtt://pve2:1883"))
    assert of(actions, ClearRetained) == [ClearRetained(HELD, 101)]
    assert [m.vmid for m in published(actions, HeldStart)] == [102]


def test_periodic_reconcile_and_heartbeat() -> None:
    """The leader reconciles every reconcile_interval_s and publishes its status every heartbeat_s."""
    run = Run(settings(reconcile_interval_s=30.0, heartbeat_s=20.0))
    run.actions.clear()
    for _ in range(60):
        run.send(Tick(), after=1.0)
    assert [r.reason for r in of(run.actions, Reconcile)] == ["periodic", "periodic"]
    assert len(published(run.actions, CoordinatorStatus)) >= 3


def test_durable_changes_ask_for_persistence() -> None:
    """A new held entry asks for the state file to be written; a probe result does not."""
    run = Run()
    assert Persist() in run.hold(101)
    assert Persist() not in run.healthy(passes=1)


def test_after_a_takeover_guests_are_looked_up_a_few_at_a_time() -> None:
    """A new leader leaves the bulk to its reconcile, then looks at max_observe guests per interval."""
    run = Run(settings(max_observe=3, observe_interval_s=2.0), leader=False)
    for vmid in range(101, 111):
        run.hold(vmid)
    run.send(LockAcquired())
    assert of(run.send(Tick(), after=1.0), ObserveGuest) == []
    looked = of(run.send(Tick(), after=1.0), ObserveGuest)
    assert [o.vmid for o in looked] == [101, 102, 103]
    assert of(run.send(Tick(), after=1.0), ObserveGuest) == []
    assert len(of(run.send(Tick(), after=1.0), ObserveGuest)) == 3


def test_after_a_takeover_guests_of_a_dead_node_are_not_looked_at_unless_ha() -> None:
    """A node that is down answers nothing (595): only its HA guests, which HA may move, are looked for."""
    run = Run(leader=False)
    run.hold(101, node="pve2")
    run.hold(102, node="pve2", ha=True)
    run.send(NodeStatus(time=run.now, node="pve2", state="offline"))
    run.send(LockAcquired(), after=1.0)
    looked = [a.vmid for a in of(run.send(Tick(), after=60.0), ObserveGuest)]
    assert looked == [102]
