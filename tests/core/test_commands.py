"""Admin commands: release (with and without force), drop, bad requests; always answered by the leader."""

from __future__ import annotations

from typing import Any

import pytest

from startgate.bus.messages import Command, Reply, Ticket
from startgate.core.actions import StartGuest
from startgate.core.events import BadCommand, StartResult
from tests.core.helpers import T0, Run, observed, of, published, settings

REQ = "0123456789abcdef0123456789abcdef"


def command(verb: str = "release", **kw: Any) -> Command:
    """A CLI command with a fixed request id."""
    return Command(event_id=REQ, time=T0, verb=verb, requested_by="root@pam on pve1", **kw)


def reply(actions: Any) -> Reply:
    """The one reply among the actions."""
    (r,) = published(actions, Reply)
    assert r.request_id == REQ
    return r


def outcomes(r: Reply) -> dict[int, str]:
    """VMID -> outcome of a reply."""
    return {i.vmid: i.outcome for i in r.items}


def setup(healthy: bool = False, failed: bool = False) -> Run:
    """A leader with held 101 and 102 and a known, not held, guest 103."""
    run = Run(settings(start_retries=0))
    run.send(observed(103, status="stopped"))
    run.hold(101)
    run.hold(102)
    if failed:
        run.healthy()
        run.send(StartResult(vmid=101, error="boom", status=500))
        run.send(StartResult(vmid=102, error="boom", status=500))
        if not healthy:
            run.unhealthy()
    elif healthy:
        run.healthy()
    return run


@pytest.mark.parametrize(
    ("cmd", "healthy", "failed", "ok", "expected"),
    [
        ({"vmids": [101]}, False, False, False, {101: "refused"}),
        ({"vmids": [101], "force": True}, False, False, True, {101: "ticket"}),
        ({"vmids": [103], "force": True}, False, False, True, {103: "ticket"}),
        ({"vmids": [103]}, False, False, True, {103: "not-held"}),
        ({"vmids": [999]}, False, False, False, {999: "unknown"}),
        ({"vmids": [101, 999], "force": True}, False, False, False, {101: "ticket", 999: "unknown"}),
        ({"all": True}, True, True, True, {101: "released", 102: "released"}),
        ({"all": True, "force": True}, False, False, True, {101: "ticket", 102: "ticket"}),
        ({"all": True}, False, False, False, {101: "refused", 102: "refused"}),
    ],
)
def test_release(
    cmd: dict[str, Any], healthy: bool, failed: bool, ok: bool, expected: dict[int, str]
) -> None:
    """Each release request gets the per-VMID outcomes the table lists."""
    run = setup(healthy=healthy, failed=failed)
    r = reply(run.send(command(**cmd)))
    assert (r.ok, outcomes(r)) == (ok, expected)


def test_forced_release_publishes_tickets_and_starts_at_once() -> None:
    """--force: a ticket for each guest before its start, whatever the gate says."""
    run = setup()
    actions = run.send(command(vmids=[101, 102], force=True))
    assert [t.vmid for t in published(actions, Ticket)] == [101, 102]
    assert of(actions, StartGuest) == [StartGuest(101, "pve1", "qemu"), StartGuest(102, "pve1", "qemu")]
    assert run.entry(101).forced


def test_release_of_failed_starts_revives_them_with_fresh_retries() -> None:
    """A failed entry released by command is held again with its retries reset, and goes."""
    run = setup(healthy=True, failed=True)
    assert run.entry(101).state == "failed"
    actions = run.send(command(vmids=[101]))
    assert of(actions, StartGuest) == [StartGuest(101, "pve1", "qemu")]
    assert run.entry(101).tries == 0


@pytest.mark.parametrize(
    ("cmd", "ok", "expected", "left"),
    [
        ({"vmids": [101]}, True, {101: "dropped"}, {102}),
        ({"all": True}, True, {101: "dropped", 102: "dropped"}, set()),
        ({"vmids": [103]}, True, {103: "not-held"}, {101, 102}),
        ({"vmids": [999]}, False, {999: "unknown"}, {101, 102}),
    ],
)
def test_drop(cmd: dict[str, Any], ok: bool, expected: dict[int, str], left: set[int]) -> None:
    """drop forgets held starts (and is answered per VMID)."""
    run = setup()
    r = reply(run.send(command("drop", **cmd)))
    assert (r.ok, outcomes(r)) == (ok, expected)
    assert set(run.state.held) == left


def test_a_dropped_guest_is_not_released_later() -> None:
    """After a drop, the gate turning healthy releases only what is left."""
    run = setup()
    run.send(command("drop", vmids=[101]))
    assert [a.vmid for a in of(run.healthy(), StartGuest)] == [102]


def test_a_request_with_no_vmids_is_a_bad_request() -> None:
    """Neither VMIDs nor all: an error reply, nothing done."""
    run = setup()
    r = reply(run.send(command()))
    assert not r.ok
    assert "bad request" in r.message


def test_an_undecodable_command_is_answered_with_an_error() -> None:
    """The service passes a payload that did not validate as BadCommand; the leader answers it."""
    run = setup()
    r = reply(run.send(BadCommand(request_id=REQ, error="vmids.0: not a VMID")))
    assert (r.ok, r.message) == (False, "bad request: vmids.0: not a VMID")


def test_a_follower_neither_acts_on_nor_answers_commands() -> None:
    """Only the leader replies."""
    run = Run(leader=False)
    run.hold(101)
    assert run.send(command(vmids=[101], force=True)) == ()
    assert run.send(BadCommand(request_id=REQ, error="x")) == ()
