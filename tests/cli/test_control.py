"""`startgate release` / `drop`: a Command goes out, the coordinator's Reply comes back (or not)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from startgate.bus import messages as m
from startgate.bus.broker import MosquittoProcess
from startgate.bus.mqtt import ClientSettings
from startgate.bus.topics import Topics
from startgate.commands.testing import FakeCoordinator, reply_to
from tests.cli.conftest import Invoke, held

pytestmark = pytest.mark.broker


@pytest.fixture
def coord(
    session_broker: MosquittoProcess, topics: Topics, fast: ClientSettings
) -> Callable[..., FakeCoordinator]:
    """A fake coordinator on the shared broker (answering every command as done, unless told)."""

    def make(**kw: object) -> FakeCoordinator:
        return FakeCoordinator(session_broker.url, topics, fast, **kw)  # type: ignore[arg-type]  # answer=

    return make


def test_release_prints_the_reply_and_exits_0(invoke: Invoke, coord: Callable[..., FakeCoordinator]) -> None:
    """The Command names the VMIDs and who asked; the coordinator's answer is printed."""
    with coord() as fake:
        result = invoke("release", "101", "102")
    assert result.exit_code == 0, result.output
    [cmd] = fake.commands
    assert (cmd.verb, cmd.vmids, cmd.all, cmd.force) == ("release", [101, 102], False, False)
    assert "@" in cmd.requested_by
    assert "coordinator pve2: release: 2 of 2 done" in result.stdout
    assert "101   released" in result.stdout


def test_release_all_sends_all_without_vmids(invoke: Invoke, coord: Callable[..., FakeCoordinator]) -> None:
    """--all asks for every held start."""
    with coord() as fake:
        result = invoke("release", "--all")
    assert result.exit_code == 0, result.output
    assert fake.commands[0].all is True
    assert fake.commands[0].vmids == []


def test_release_refused_exits_1_and_shows_why(invoke: Invoke, coord: Callable[..., FakeCoordinator]) -> None:
    """A reply with ok=false (a gate still unhealthy) exits 1 with each VMID's detail."""

    def refuse(cmd: m.Command) -> m.Reply:
        items = [m.ReplyItem(vmid=v, outcome="refused", detail="gate linstor unhealthy") for v in cmd.vmids]
        return reply_to(cmd, items, ok=False, message="release: 0 of 1 done")

    with coord(answer=refuse):
        result = invoke("release", "101")
    assert result.exit_code == 1
    assert "refused" in result.stdout
    assert "gate linstor unhealthy" in result.stdout


def test_release_force_asks_first_and_sends_nothing_when_declined(
    invoke: Invoke, coord: Callable[..., FakeCoordinator]
) -> None:
    """--force without --yes asks; 'n' sends nothing and exits 1."""
    with coord() as fake:
        result = invoke("release", "--force", "101", input="n\n")
    assert result.exit_code == 1
    assert "even if its gates are unhealthy" in result.output
    assert fake.commands == []


def test_release_force_yes_sends_force(invoke: Invoke, coord: Callable[..., FakeCoordinator]) -> None:
    """--force --yes sends a forced release without asking; the JSON reply validates."""
    with coord() as fake:
        result = invoke("release", "--force", "--yes", "--json", "101")
    assert result.exit_code == 0, result.output
    assert fake.commands[0].force is True
    reply = m.Reply.model_validate(json.loads(result.stdout))
    assert reply.items[0].outcome == "ticket"
    assert reply.request_id == fake.commands[0].event_id


def test_drop_sends_drop(invoke: Invoke, coord: Callable[..., FakeCoordinator]) -> None:
    """`drop` sends verb drop for the named VMIDs."""
    with coord() as fake:
        result = invoke("drop", "102")
    assert result.exit_code == 0, result.output
    assert (fake.commands[0].verb, fake.commands[0].vmids) == ("drop", [102])
    assert "dropped" in result.stdout


def test_release_nobody_answers_times_out_with_exit_1(
    invoke: Invoke, coord: Callable[..., FakeCoordinator]
) -> None:
    """A coordinator that stays silent: a clear timeout message, exit 1."""
    with coord(answer=lambda _cmd: None) as fake:
        result = invoke("release", "101", "--timeout", "1")
    assert result.exit_code == 1
    assert "no answer from the coordinator within 1s" in result.stderr
    assert len(fake.commands) == 1


def test_release_with_no_coordinator_at_all_times_out(invoke: Invoke) -> None:
    """No one listens on cmd/+: the same timeout, exit 1."""
    result = invoke("release", "101", "--timeout", "0.5")
    assert result.exit_code == 1
    assert "is a coordinator running?" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["release", "99"], "out of range"),
        (["release", "abc"], "is not a number"),
        (["release", "1000000000"], "is not a number"),
        (["release", "555"], "unknown VMID 555"),
        (["drop", "555", "101"], "unknown VMID 555"),
        (["release"], "name the VMIDs"),
        (["release", "--all", "101"], "not both"),
    ],
)
def test_bad_vmids_are_usage_errors(
    invoke: Invoke, coord: Callable[..., FakeCoordinator], args: list[str], message: str
) -> None:
    """Out of range, not a number, unknown, none or both: exit 2, nothing sent."""
    with coord() as fake:
        result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert fake.commands == []


def test_a_held_vmid_without_config_is_accepted(
    invoke: Invoke, coord: Callable[..., FakeCoordinator], seed: Callable[..., None]
) -> None:
    """A VMID with no config but a retained held start (a guest just destroyed) can be dropped."""
    seed(held(555))
    with coord() as fake:
        result = invoke("drop", "555")
    assert result.exit_code == 0, result.output
    assert fake.commands[0].vmids == [555]
