"""Releasing held starts: order, limits, up delays, results, retries, HA, readiness and the timeout policy."""

from __future__ import annotations

from typing import Any

import pytest

from startgate.bus.messages import HeldStart, NodeStatus, Ticket
from startgate.core.actions import ClearRetained, FollowTask, ObserveGuest, SetHaState, StartGuest, Wake
from startgate.core.events import GuestObserved, HaStateResult, StartResult, TaskResult, Tick
from startgate.core.model import GateSpec
from tests.core.helpers import T0, Run, guest_event, observed, of, published, settings


def started(actions: Any) -> list[int]:
    """VMIDs of the StartGuest actions, in order."""
    return [a.vmid for a in of(actions, StartGuest)]


def finish(run: Run, vmid: int, *, ok: bool = True, after: float = 1.0) -> tuple[Any, ...]:
    """Answer the start of `vmid` with a UPID, then end its task."""
    upid = f"UPID:pve1:0000{vmid}:00000000:00000000:qmstart:{vmid}:t@pve!c:"
    run.send(StartResult(vmid=vmid, upid=upid))
    return run.send(TaskResult(vmid=vmid, upid=upid, ok=ok, exitstatus="OK" if ok else "boom"), after=after)


def test_nothing_is_released_while_the_gate_is_unhealthy() -> None:
    """Held starts wait; a flip to healthy releases them."""
    run = Run()
    run.hold(101)
    run.send(Tick(), after=60.0)
    assert started(run.actions) == []
    assert started(run.healthy()) == [101]


@pytest.mark.parametrize(
    ("guests", "limit", "first_wave"),
    [
        ({101: 1, 102: 1, 103: 2, 104: None}, 2, [101, 102]),
        ({104: None, 103: 2, 102: 1, 101: 1}, 4, [101, 102]),  # one order level at a time
        ({105: None, 104: None, 103: None}, 2, [103, 104]),  # by VMID within a level
        ({110: 0, 101: 3}, 4, [110]),  # order 0 before order 3, whatever the VMIDs
        ({101: None, 102: None, 103: None, 104: None, 105: None}, 3, [101, 102, 103]),
    ],
)
def test_release_order_and_parallel_limit_per_node(
    guests: dict[int, int | None], limit: int, first_wave: list[int]
) -> None:
    """The first wave is the lowest order level, by VMID, at most max_parallel_starts of it."""
    run = Run(settings(max_parallel_starts=limit))
    for vmid, order in guests.items():
        run.send(observed(vmid, order=order))
        run.hold(vmid)
    assert started(run.healthy()) == first_wave


def test_the_next_order_level_waits_until_the_previous_one_has_no_start_in_flight() -> None:
    """Level 2 starts only when both level-1 starts have ended; then level 'none'."""
    run = Run()
    for vmid, order in {101: 1, 102: 1, 103: 2, 104: None}.items():
        run.send(observed(vmid, order=order))
        run.hold(vmid)
    assert started(run.healthy()) == [101, 102]
    assert started(finish(run, 101)) == []
    assert started(finish(run, 102)) == [103]
    assert started(finish(run, 103)) == [104]


def test_up_delays_the_next_order_level() -> None:
    """After a level-1 guest with up=10 started, level 2 waits 10 s (a Wake asks for it)."""
    run = Run()
    run.send(observed(101, order=1, up=10.0))
    run.send(observed(102, order=2))
    run.hold(101)
    run.hold(102)
    run.healthy()
    actions = finish(run, 101, after=1.0)
    assert started(actions) == []
    assert (
        run.now + 10.0 in [w.at for w in of(actions, Wake)]
        or min(w.at for w in of(actions, Wake)) <= run.now + 10
    )
    assert started(run.send(Tick(), after=9.0)) == []
    assert started(run.send(Tick(), after=1.0)) == [102]


def test_a_failed_start_does_not_delay_the_next_level_by_up() -> None:
    """Like startall, `up` applies after a successful start only."""
    run = Run(settings(start_retries=0))
    run.send(observed(101, order=1, up=30.0))
    run.send(observed(102, order=2))
    run.hold(101)
    run.hold(102)
    run.healthy()
    assert started(finish(run, 101, ok=False)) == [102]


def test_nodes_are_paced_independently() -> None:
    """Each node has its own slots and order levels."""
    run = Run(settings(max_parallel_starts=1))
    for vmid, node in [(101, "pve1"), (102, "pve1"), (201, "pve2"), (202, "pve2")]:
        run.hold(vmid, node)
    assert sorted(started(run.healthy())) == [101, 201]


@pytest.mark.parametrize(
    ("result", "state", "follow", "observe"),
    [
        ({"upid": "UPID:pve1:1:2:3:qmstart:101:t@pve!c:"}, "releasing", True, False),
        ({"already_running": True, "error": "VM 101 already running", "status": 500}, None, False, False),
        ({"error": "internal error", "status": 500}, "held", False, False),
        ({"error": "permission check failed", "status": 403}, "held", False, False),
        ({"error": "timed out"}, "held", False, True),  # no answer: the start may have happened
    ],
)
def test_start_results(result: dict[str, Any], state: str | None, follow: bool, observe: bool) -> None:
    """Each answer to a start call leads where the table says (None: the entry is cleared)."""
    run = Run()
    run.hold(101)
    run.healthy()
    actions = run.send(StartResult(vmid=101, **result))
    assert (run.state.held[101].state if 101 in run.state.held else None) == state
    assert bool(of(actions, FollowTask)) == follow
    assert bool(of(actions, ObserveGuest)) == observe


def test_a_403_is_published_as_a_missing_privilege() -> None:
    """The held record says which privilege the token lacks."""
    run = Run()
    run.hold(101)
    run.healthy()
    actions = run.send(StartResult(vmid=101, error="Permission check failed", status=403))
    (rec,) = published(actions, HeldStart)
    assert "VM.PowerMgmt" in rec.reason
    assert "403" in rec.reason


def test_failed_starts_are_retried_with_backoff_then_marked_failed() -> None:
    """start_retries=2: three attempts, 5 s then 10 s apart, then state failed (published)."""
    run = Run()
    run.hold(101)
    assert started(run.healthy()) == [101]
    finish(run, 101, ok=False, after=0.0)
    assert run.entry(101).state == "held"
    assert run.entry(101).retry_at == run.now + 5.0
    assert started(run.send(Tick(), after=4.9)) == []
    assert started(run.send(Tick(), after=0.1)) == [101]
    finish(run, 101, ok=False, after=0.0)
    assert run.entry(101).retry_at == run.now + 10.0
    assert started(run.send(Tick(), after=10.0)) == [101]
    actions = finish(run, 101, ok=False, after=0.0)
    assert run.entry(101).state == "failed"
    assert [r.state for r in published(actions, HeldStart)] == ["failed"]
    assert started(run.send(Tick(), after=1000.0)) == []


def test_a_task_result_for_another_upid_is_ignored() -> None:
    """Only the followed task's end counts."""
    run = Run()
    run.hold(101)
    run.healthy()
    run.send(StartResult(vmid=101, upid="UPID:a:"))
    run.send(TaskResult(vmid=101, upid="UPID:b:", ok=True))
    assert run.entry(101).state == "releasing"


def test_a_release_with_no_outcome_times_out_and_is_checked_before_a_retry() -> None:
    """A task that never ends is a failed attempt after release_timeout_s; the guest is looked at first."""
    run = Run(settings(release_timeout_s=60.0))
    run.hold(101)
    run.healthy()
    run.send(StartResult(vmid=101, upid="UPID:x:"))
    actions = run.send(Tick(), after=60.0)
    e = run.entry(101)
    assert (e.state, e.needs_check, e.tries) == ("held", True, 1)
    assert ObserveGuest(101, "pve1", "qemu") in actions
    assert started(run.send(observed(101), after=6.0)) == [101]


@pytest.mark.parametrize(
    ("ha_state", "first", "phase"),
    [
        ("error", [SetHaState(101, "qemu", "disabled")], "ha-disable"),
        ("stopped", [SetHaState(101, "qemu", "started")], "ha-start"),
        ("disabled", [SetHaState(101, "qemu", "started")], "ha-start"),
        (None, [SetHaState(101, "qemu", "started")], "ha-start"),
        ("started", [], "ha-wait"),  # the LRM is already trying; let it
        ("relocate", [], "ha-wait"),
    ],
)
def test_ha_guests_get_ha_state_changes_never_an_api_start(
    ha_state: str | None, first: list[SetHaState], phase: str
) -> None:
    """An HA-managed guest is released through its HA resource, as the table says."""
    run = Run()
    run.send(observed(101, ha_managed=True, ha_state=ha_state))
    run.hold(101, ha=True)
    actions = run.healthy()
    assert of(actions, SetHaState) == first
    assert of(actions, StartGuest) == []
    assert run.entry(101).phase == phase


def test_ha_error_recovery_goes_disabled_then_started_then_waits_for_running() -> None:
    """error -> disabled -> started, then the guest observed running clears the entry."""
    run = Run()
    run.send(observed(101, ha_managed=True, ha_state="error"))
    run.hold(101, ha=True)
    run.healthy()
    actions = run.send(HaStateResult(vmid=101, state="disabled", ok=True))
    assert of(actions, SetHaState) == [SetHaState(101, "qemu", "started")]
    run.send(HaStateResult(vmid=101, state="started", ok=True))
    assert run.entry(101).phase == "ha-wait"
    assert ObserveGuest(101, "pve1", "qemu") in run.send(Tick(), after=2.0)
    run.send(observed(101, status="running", ha_managed=True, ha_state="started"))
    assert 101 not in run.state.held
    assert of(run.actions, StartGuest) == []


def test_ha_guest_that_falls_back_to_error_is_retried() -> None:
    """While waiting for the LRM, an observed `error` is a failed attempt (then disabled -> started again)."""
    run = Run()
    run.send(observed(101, ha_managed=True, ha_state="stopped"))
    run.hold(101, ha=True)
    run.healthy()
    run.send(HaStateResult(vmid=101, state="started", ok=True))
    run.send(observed(101, ha_managed=True, ha_state="error"), after=30.0)
    e = run.entry(101)
    assert (e.state, e.tries, e.ha_state) == ("held", 1, "error")
    actions = run.send(Tick(), after=5.0)
    assert of(actions, SetHaState) == [SetHaState(101, "qemu", "disabled")]


def test_ha_state_change_refused_is_a_failed_attempt_naming_sys_console() -> None:
    """A 403 on the HA resource says the token needs Sys.Console."""
    run = Run()
    run.send(observed(101, ha_managed=True, ha_state="error"))
    run.hold(101, ha=True)
    run.healthy()
    run.send(HaStateResult(vmid=101, state="disabled", ok=False, error="permission denied", status=403))
    assert "Sys.Console" in run.entry(101).last_error


def test_a_running_guest_is_never_started() -> None:
    """A held guest observed running is cleared, not started."""
    run = Run()
    run.hold(101)
    run.send(observed(101, status="running"))
    assert 101 not in run.state.held
    assert started(run.healthy()) == []


def test_a_guest_someone_else_is_starting_is_left_alone() -> None:
    """A hook 'allow' for a held guest (someone started it) delays our release; post-start clears it."""
    run = Run()
    run.hold(101)
    run.send(guest_event(101, "pre-start", decision="allow"))
    assert started(run.healthy()) == []
    run.send(guest_event(101, "post-start"))
    assert 101 not in run.state.held
    assert started(run.send(Tick(), after=100.0)) == []


def test_after_someone_elses_start_ends_quietly_we_look_before_releasing() -> None:
    """When the busy window passes, the guest is observed; stopped means we may release it."""
    run = Run(settings(observe_interval_s=2.0))
    run.hold(101)
    run.send(guest_event(101, "pre-start", decision="allow"))
    run.healthy()
    actions = run.send(Tick(), after=4.0)
    assert ObserveGuest(101, "pve1", "qemu") in actions
    assert started(actions) == []
    assert started(run.send(observed(101), after=0.5)) == [101]


def test_a_node_whose_satellite_is_not_online_waits() -> None:
    """Gate healthy, but pve2's satellite is not ONLINE: only pve1's guest goes."""
    run = Run()
    run.hold(101, "pve1")
    run.hold(201, "pve2")
    assert started(run.healthy(nodes={"pve1"})) == [101]
    assert started(run.healthy(nodes={"pve1", "pve2"}, passes=1)) == [201]


def test_a_node_that_is_offline_waits() -> None:
    """A held start on an offline node is not released until the node is back."""
    run = Run()
    run.hold(201, "pve2")
    run.send(NodeStatus(time=T0, node="pve2", state="offline"))
    assert started(run.healthy()) == []
    assert started(run.send(NodeStatus(time=T0, node="pve2", state="online"))) == [201]


def test_a_locked_guest_waits() -> None:
    """A guest under a lock (backup, migrate) is not started."""
    run = Run()
    run.send(observed(101, lock="backup"))
    run.hold(101)
    assert started(run.healthy()) == []
    assert started(run.send(observed(101))) == [101]


@pytest.mark.parametrize(("policy", "released"), [("start", True), ("hold", False)])
def test_gate_timeout_policy(policy: str, released: bool) -> None:
    """on_timeout=start releases after timeout_s with a ticket first; hold keeps waiting."""
    gate = GateSpec("linstor", healthy_after=3, timeout_s=30.0, on_timeout=policy)  # type: ignore[arg-type]  # parametrized literal
    run = Run(settings(gates=(gate,)))
    run.hold(101)
    assert started(run.send(Tick(), after=29.0)) == []
    actions = run.send(Tick(), after=1.0)
    assert started(actions) == ([101] if released else [])
    tickets = published(actions, Ticket)
    assert [t.vmid for t in tickets] == ([101] if released else [])
    if released:
        kinds = [type(a).__name__ for a in actions]
        assert kinds.index("Publish") < kinds.index("StartGuest")  # the hook must see the ticket first
        assert tickets[0].expires == run.now + 60.0


def test_a_ticket_is_cleared_once_the_hook_used_it() -> None:
    """The hook's allow event consumes the ticket; its retained topic is cleared."""
    gate = GateSpec("linstor", healthy_after=3, timeout_s=10.0, on_timeout="start")
    run = Run(settings(gates=(gate,)))
    run.hold(101)
    run.send(Tick(), after=10.0)
    assert 101 in run.state.tickets
    actions = run.send(guest_event(101, "pre-start", decision="allow"))
    assert 101 not in run.state.tickets
    assert ClearRetained("ticket", 101) in actions


def test_an_unused_ticket_expires() -> None:
    """An unused ticket is cleared at its expiry."""
    gate = GateSpec("linstor", healthy_after=3, timeout_s=10.0, on_timeout="start")
    run = Run(settings(gates=(gate,), ticket_ttl_s=20.0, start_retries=0))
    run.hold(101)
    run.send(Tick(), after=10.0)
    run.send(StartResult(vmid=101, error="boom", status=500))
    run.send(Tick(), after=20.0)
    assert 101 not in run.state.tickets


def test_an_unknown_gate_name_holds_the_start() -> None:
    """A held start naming a gate this coordinator does not know is never released by health."""
    run = Run()
    run.hold(101, gates=("other",))
    assert started(run.healthy()) == []


def test_guest_observed_on_another_node_moves_its_entry() -> None:
    """HA may move a guest; the held entry follows it."""
    run = Run()
    run.hold(101, "pve1")
    run.send(GuestObserved(vmid=101, node="pve2", type="qemu", status="stopped", gates=("linstor",)))
    assert run.entry(101).node == "pve2"
    assert of(run.healthy(), StartGuest) == [StartGuest(101, "pve2", "qemu")]


def test_an_ha_release_pauses_if_the_gate_fails_between_disabled_and_started() -> None:
    """disabled was set, then the gate failed: `started` waits for the next release, and no try is counted."""
    run = Run()
    run.send(observed(101, ha_managed=True, ha_state="error"))
    run.hold(101, ha=True)
    run.healthy()
    run.unhealthy()
    actions = run.send(HaStateResult(vmid=101, state="disabled", ok=True))
    assert of(actions, SetHaState) == []
    e = run.entry(101)
    assert (e.state, e.ha_state, e.tries) == ("held", "disabled", 0)
    assert of(run.healthy(), SetHaState) == [SetHaState(101, "qemu", "started")]
