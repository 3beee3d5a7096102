"""Reconciliation: held starts that never reached a hook, found from API observations."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from startgate.core.events import GuestMissing, NodeObserved, StartResult, TaskObserved
from startgate.core.model import Tombstone
from tests.core.helpers import T0, Run, observed, settings

BOOT = T0 - 300.0


def booted(run: Run, node: str = "pve1", *, startall_done: bool = True) -> None:
    """Tell the core `node` is online, booted at BOOT."""
    run.send(NodeObserved(node=node, online=True, boot_time=BOOT, startall_done=startall_done))


@pytest.mark.parametrize(
    ("guest", "startall_done", "held"),
    [
        ({}, True, True),  # onboot member, stopped, never ran since boot
        ({}, False, False),  # startall still running: it may yet start it
        ({"onboot": False}, True, False),
        ({"gates": ()}, True, False),  # not a member of any gate
        ({"status": "running"}, True, False),
        ({"last_ran": BOOT + 10}, True, False),  # ran after boot: someone stopped it on purpose
        ({"last_ran": BOOT - 10}, True, True),  # ran before the boot only
        ({"lock": "backup"}, True, False),
        ({"starting": True}, True, False),
        ({"ha_managed": True, "ha_state": "started"}, True, False),  # HA's business (until stuck)
        ({"ha_managed": True, "ha_state": "error"}, True, True),
        ({"ha_managed": True, "ha_state": "error", "gates": ()}, True, False),
        ({"ha_managed": True, "ha_state": "ignored"}, True, True),  # ignored: like not HA-managed
    ],
)
def test_guests_discovered_as_held(guest: dict[str, Any], startall_done: bool, held: bool) -> None:
    """An observed guest becomes a held start exactly in the cases the table lists."""
    run = Run()
    booted(run, startall_done=startall_done)
    run.send(observed(101, **{"onboot": True, **guest}))
    assert (101 in run.state.held) is held
    if held:
        assert run.entry(101).source == "reconcile"


def test_an_offline_or_unknown_node_reveals_nothing() -> None:
    """Without a known online node and boot time, a stopped onboot guest is not held."""
    run = Run()
    run.send(observed(101, onboot=True))
    assert 101 not in run.state.held
    run.send(NodeObserved(node="pve1", online=False, boot_time=BOOT))
    run.send(observed(101, onboot=True))
    assert 101 not in run.state.held


def test_a_guest_an_admin_dropped_is_not_rediscovered() -> None:
    """A dropped tombstone keeps reconciliation away from the guest."""
    run = Run()
    booted(run)
    run.state = dataclasses.replace(
        run.state, tombstones=run.state.tombstones.set(101, Tombstone(at=T0, dropped=True))
    )
    run.send(observed(101, onboot=True))
    assert 101 not in run.state.held


def test_an_ha_start_stuck_long_enough_is_held_and_reset_through_disabled() -> None:
    """HA says started, the guest stays stopped for ha_stuck_s: held, and released via disabled -> started."""
    run = Run(settings(ha_stuck_s=60.0))
    booted(run)
    run.healthy()
    run.send(observed(101, ha_managed=True, ha_state="started"))
    assert 101 not in run.state.held
    run.send(observed(101, ha_managed=True, ha_state="started"), after=59.0)
    assert 101 not in run.state.held
    actions = run.send(observed(101, ha_managed=True, ha_state="started"), after=1.0)
    e = run.entry(101)
    assert e.stuck
    assert [type(a).__name__ for a in actions if type(a).__name__ == "SetHaState"] == ["SetHaState"]
    assert e.state == "releasing"
    assert e.phase == "ha-disable"


def failed_task(vmid: int = 101, end: float = BOOT + 60, **kw: Any) -> TaskObserved:
    """A failed start task seen in a node's task list."""
    base: dict[str, Any] = {
        "node": "pve1",
        "upid": f"UPID:pve1:1:2:3:vzstart:{vmid}:root@pam:",
        "vmid": vmid,
        "type": "vzstart",
        "endtime": end,
        "ok": False,
        "exitstatus": "could not connect to any LINSTOR controller",
    }
    base.update(kw)
    return TaskObserved(**base)


@pytest.mark.parametrize(
    ("task", "guest", "held"),
    [
        ({}, {}, True),  # the container held in the storage plugin
        ({"ok": True}, {}, False),
        ({"type": "qmstop"}, {}, False),
        ({"end": BOOT - 1}, {}, False),  # before this boot
        ({}, {"status": "running"}, False),
        ({}, {"last_ran": BOOT + 120}, False),  # it ran after that failure
        ({}, {"gates": ()}, False),
        (
            {},
            {"ha_managed": True, "ha_state": "started"},
            False,
        ),  # the LRM retries; error is caught separately
        ({"vmid": 999}, {}, False),  # a guest we have not observed
    ],
)
def test_failed_start_tasks_reveal_held_starts(
    task: dict[str, Any], guest: dict[str, Any], held: bool
) -> None:
    """A failed qmstart/vzstart of a stopped member since its node booted is a held start."""
    run = Run()
    booted(run, startall_done=False)
    run.send(observed(101, type="lxc", onboot=False, **guest))
    run.send(failed_task(**task))
    vmid = task.get("vmid", 101)
    assert (vmid in run.state.held) is held
    if held:
        assert "LINSTOR" in run.entry(vmid).reason
        assert run.entry(vmid).type == "lxc"


def test_a_failed_task_older_than_the_last_clear_is_not_held_again() -> None:
    """Once its held start was cleared, an old failure in the task list is history."""
    run = Run()
    booted(run)
    run.send(observed(101, onboot=False))
    run.send(failed_task())
    run.send(observed(101, status="running"), after=1.0)
    run.send(observed(101, status="stopped"), after=1.0)
    run.send(failed_task())
    assert 101 not in run.state.held


def test_a_node_boot_time_that_moves_means_a_new_boot() -> None:
    """Uptime wobble keeps the boot time; a jump beyond a minute is a reboot."""
    run = Run()
    run.send(NodeObserved(node="pve1", online=True, boot_time=BOOT))
    run.send(NodeObserved(node="pve1", online=True, boot_time=BOOT + 2))
    assert run.state.nodes["pve1"].boot_time == BOOT
    run.send(NodeObserved(node="pve1", online=True, boot_time=BOOT + 600))
    assert run.state.nodes["pve1"].boot_time == BOOT + 600


def test_a_deleted_guest_loses_its_held_start() -> None:
    """A guest that no longer exists cannot be started: its entry goes."""
    run = Run()
    run.hold(101)
    run.send(GuestMissing(vmid=101))
    assert 101 not in run.state.held


def test_needs_check_resolves_only_with_an_observation_made_after_the_doubt() -> None:
    """An observation read before the doubt arose does not clear it; a later one does."""
    run = Run()
    run.hold(101)
    run.healthy()
    run.send(StartResult(vmid=101, error="timeout"))
    doubt = run.entry(101).check_after
    run.send(observed(101, observed_at=doubt - 1), after=10.0)
    assert run.entry(101).needs_check
    run.send(observed(101, observed_at=doubt + 1))
    assert run.entry(101).state == "releasing"
