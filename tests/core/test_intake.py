"""Bus intake: hook events, retained held records (ours, a hook's, stale ones), tickets, node events."""

from __future__ import annotations

from startgate.bus.messages import Cleared, HeldStart, NodeEvent, NodeStatus, Ticket
from startgate.bus.topics import HELD, TICKET, TopicRef
from startgate.core.actions import ClearRetained, Reconcile, StartGuest
from startgate.core.events import StartResult
from tests.core.helpers import (
    T0,
    Run,
    guest_event,
    held_record,
    hold_event,
    observed,
    of,
    published,
    settings,
)


def test_a_hook_refusal_creates_one_entry_and_publishes_its_record() -> None:
    """The first refusal makes a held entry; the leader republishes it as coordinator-owned."""
    run = Run()
    actions = run.hold(101)
    e = run.entry(101)
    assert (e.state, e.source, e.gates, e.attempts) == ("held", "hook", ("linstor",), 1)
    (rec,) = published(actions, HeldStart)
    assert (rec.vmid, rec.source, rec.state) == (101, "coordinator", "held")


def test_refusals_are_counted_and_a_duplicate_is_not() -> None:
    """A newer refusal counts; the same event twice (QoS 1 duplicate) does not."""
    run = Run()
    ev = guest_event(101, "pre-start", decision="hold", gates=["linstor"], time=T0)
    run.send(ev)
    run.send(ev)
    assert run.entry(101).attempts == 1
    run.send(guest_event(101, "pre-start", decision="hold", gates=["linstor"], time=T0 + 10))
    assert run.entry(101).attempts == 2
    assert run.entry(101).last_held == T0 + 10


def test_the_hook_record_and_event_of_one_refusal_count_once() -> None:
    """A refusal arrives as a guest event and as a retained record with the same time: one attempt."""
    run = Run()
    run.hold(101)
    run.send(held_record(101, attempts=1))
    assert run.entry(101).attempts == 1


def test_a_refusal_without_gates_is_ignored() -> None:
    """A hold that names no gate (and a guest we know nothing of) makes no entry."""
    run = Run()
    run.hold(101, gates=())
    assert 101 not in run.state.held


def test_a_new_refusal_revives_a_failed_entry_with_fresh_retries() -> None:
    """Someone tried again after we gave up: the entry is held again with its retries reset."""
    run = Run(settings(start_retries=0))
    run.hold(101)
    run.healthy()
    run.send(StartResult(vmid=101, error="boom", status=500))
    assert run.entry(101).state == "failed"
    run.send(guest_event(101, "pre-start", decision="hold", gates=["linstor"], time=run.now + 1), after=1.0)
    e = run.entry(101)
    assert (e.state, e.tries) == ("releasing", 0)  # held again, and released at once: the gate is healthy


def test_post_start_clears_the_entry_and_records_that_the_guest_ran() -> None:
    """The hook's post-start event clears the held start and its retained record."""
    run = Run()
    run.hold(101)
    actions = run.send(guest_event(101, "post-start", time=T0 + 5))
    assert 101 not in run.state.held
    assert ClearRetained(HELD, 101) in actions
    assert run.state.guests[101].status == "running"
    assert run.state.guests[101].last_ran == T0 + 5


def test_a_stale_retained_record_is_not_resurrected() -> None:
    """A record replayed by a broker that was down (older than the clear) is cleared again, not adopted."""
    run = Run()
    run.hold(101)
    run.send(guest_event(101, "post-start"), after=5.0)
    actions = run.send(held_record(101, time=T0, source="coordinator"), after=1.0)
    assert 101 not in run.state.held
    assert ClearRetained(HELD, 101) in actions
    actions = run.send(held_record(101, time=T0, source="hook"))
    assert 101 not in run.state.held


def test_a_leader_ignores_its_own_record_coming_back() -> None:
    """Our own retained publication echoed by the broker changes nothing."""
    run = Run()
    actions = run.hold(101)
    (rec,) = published(actions, HeldStart)
    before = run.state.held
    assert run.send(rec) == ()
    assert run.state.held is before


def test_a_leader_adopts_a_former_leaders_record_and_checks_it_first() -> None:
    """An unknown coordinator record (from before a failover) becomes an entry that needs a look."""
    run = Run()
    run.send(held_record(105, source="coordinator", state="releasing"))
    e = run.entry(105)
    assert (e.state, e.needs_check) == ("held", True)
    assert of(run.healthy(), StartGuest) == []
    assert of(run.send(observed(105), after=1.0), StartGuest) == [StartGuest(105, "pve1", "qemu")]


def test_a_follower_mirrors_the_leaders_records_and_clears() -> None:
    """A follower keeps the leader's records as they are, and drops them when the leader clears them."""
    run = Run(leader=False)
    run.send(held_record(105, source="coordinator", state="failed"))
    assert run.entry(105).state == "failed"
    run.send(Cleared(ref=TopicRef(HELD, 105)))
    assert 105 not in run.state.held
    assert of(run.actions, ClearRetained) == []


def test_retained_tickets_are_tracked_and_expired_ones_cleared() -> None:
    """A live ticket from a former leader is kept until it expires; a dead one is cleared at once."""
    run = Run()
    run.send(Ticket(time=T0, vmid=101, expires=T0 + 30))
    assert 101 in run.state.tickets
    actions = run.send(Ticket(time=T0 - 100, vmid=102, expires=T0 - 1))
    assert 102 not in run.state.tickets
    assert ClearRetained(TICKET, 102) in actions
    run.send(Cleared(ref=TopicRef(TICKET, 101)))
    assert 101 not in run.state.tickets


def test_a_node_boot_event_triggers_a_reconcile_of_that_node() -> None:
    """After a boot the node is reconciled; its onboot guests wait for its startall to end."""
    run = Run()
    actions = run.send(NodeEvent(time=T0, node="pve2", kind="boot", boot_id="b1"))
    assert Reconcile("node pve2 booted", nodes=("pve2",)) in actions
    n = run.state.nodes["pve2"]
    assert (n.online, n.boot_time, n.startall_done) == (True, T0, False)


def test_a_follower_does_not_reconcile() -> None:
    """Only the leader asks the API for anything."""
    run = Run(leader=False)
    actions = run.send(NodeEvent(time=T0, node="pve2", kind="boot"))
    assert of(actions, Reconcile) == []


def test_a_new_boot_id_in_a_node_status_means_a_reboot() -> None:
    """A node agent's status with a new boot id triggers a reconcile of that node."""
    run = Run()
    run.send(NodeStatus(time=T0, node="pve2", state="online", boot_id="b1"))
    assert of(run.send(NodeStatus(time=T0, node="pve2", state="online", boot_id="b1")), Reconcile) == []
    assert of(run.send(NodeStatus(time=T0, node="pve2", state="online", boot_id="b2")), Reconcile) != []


def test_stop_events_record_when_the_guest_last_ran() -> None:
    """pre-stop/post-stop mark the guest as having run (so reconcile will not hold it after a reboot)."""
    run = Run()
    run.send(guest_event(101, "post-stop", time=T0 + 3))
    g = run.state.guests[101]
    assert (g.status, g.last_ran) == ("stopped", T0 + 3)


def test_a_hook_event_updates_what_is_known_of_the_guest_and_a_repeat_changes_nothing() -> None:
    """Node, gates and HA flag of a hook event land on the guest; the same event again keeps it as is."""
    run = Run()
    run.send(observed(101, node="pve1", status="running", gates=("linstor",)))
    run.send(hold_event(101, "pve2", run.now, gates=("linstor", "ceph"), ha=True), after=1.0)
    g = run.state.guests[101]
    assert (g.node, g.gates, g.ha_managed, g.status) == ("pve2", ("linstor", "ceph"), True, "stopped")
    run.send(hold_event(101, "pve2", run.now, gates=("linstor", "ceph"), ha=True), after=1.0)
    assert run.state.guests[101] is g
    run.send(guest_event(101, "post-stop", node="pve3", time=run.now, gates=["linstor"]))
    g = run.state.guests[101]
    assert (g.node, g.gates, g.ha_managed, g.status) == ("pve3", ("linstor",), True, "stopped")
