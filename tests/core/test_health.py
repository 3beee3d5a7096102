"""Gate health: hysteresis, probe scheduling, stalled probes, publication and node readiness."""

from __future__ import annotations

import pytest

from startgate.bus.messages import GateHealth
from startgate.core.actions import ProbeGate, StartGuest
from startgate.core.events import ProbeResult, StartResult, Tick
from startgate.core.health import observe
from startgate.core.model import GateSpec, GateState
from tests.core.helpers import Run, observed, of, published, settings

SPEC = GateSpec("linstor", healthy_after=3)


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ("+", "-"),
        ("++", "--"),
        ("+++", "--+"),
        ("++++", "--++"),
        ("+++-", "--+-"),
        ("+++-+", "--+--"),
        ("+++-+++", "--+---+"),
        ("++-+++", "-----+"),
        ("-", "-"),
        ("--+++", "----+"),
    ],
)
def test_healthy_after_n_passes_in_a_row_and_unhealthy_at_the_first_failure(
    results: str, expected: str
) -> None:
    """Each probe result ('+' pass, '-' fail) leaves the gate healthy ('+') or not ('-') as the table says."""
    g = GateState()
    seen = ""
    for i, r in enumerate(results):
        g = observe(SPEC, g, ProbeResult(gate="linstor", ok=r == "+"), float(i))
        seen += "+" if g.healthy else "-"
    assert seen == expected


def test_since_moves_only_when_health_flips() -> None:
    """`since` is the time of the last flip, not of the last check."""
    g = GateState()
    times = {}
    for t, ok in [(1, True), (2, True), (3, True), (4, True), (5, False), (6, False)]:
        g = observe(SPEC, g, ProbeResult(gate="linstor", ok=ok), float(t))
        times[t] = g.since
    assert times == {1: 1.0, 2: 1.0, 3: 3.0, 4: 3.0, 5: 5.0, 6: 5.0}


@pytest.mark.parametrize(
    ("ok", "nodes", "expected"),
    [
        (True, frozenset({"pve1"}), frozenset({"pve1"})),
        (True, None, frozenset()),  # the nodes query failed: no node counts as ready
        (False, frozenset({"pve1"}), frozenset()),
    ],
)
def test_ready_nodes_follow_the_latest_probe(
    ok: bool, nodes: frozenset[str] | None, expected: frozenset[str]
) -> None:
    """Only a passing probe with a satellite list makes nodes ready."""
    g = observe(SPEC, GateState(), ProbeResult(gate="linstor", ok=ok, nodes_online=nodes), 1.0)
    assert g.nodes_online == expected


def test_probes_are_scheduled_every_interval_and_not_doubled_while_one_is_running() -> None:
    """A Tick asks for a probe when due, never a second one while the first has not answered."""
    run = Run(leader=False)
    assert of(run.actions, ProbeGate) == [ProbeGate("linstor")]  # Started probes at once
    assert of(run.send(Tick(), after=5.0), ProbeGate) == []  # still probing
    run.send(ProbeResult(gate="linstor", ok=True))
    assert of(run.send(Tick(), after=0.0), ProbeGate) == [ProbeGate("linstor")]  # 5 s > interval 2 s
    run.send(ProbeResult(gate="linstor", ok=True), after=0.1)
    assert of(run.send(Tick(), after=1.0), ProbeGate) == []
    assert of(run.send(Tick(), after=1.0), ProbeGate) == [ProbeGate("linstor")]


def test_a_probe_that_never_answers_counts_as_a_failure() -> None:
    """After probe_stall_s without a result the gate turns unhealthy and a new probe goes out."""
    run = Run(settings(probe_stall_s=10.0))
    run.healthy()
    run.send(Tick(), after=2.0)
    assert run.state.gates["linstor"].probing_since is not None
    actions = run.send(Tick(), after=10.0)
    g = run.state.gates["linstor"]
    assert not g.healthy
    assert "did not answer" in g.detail
    assert of(actions, ProbeGate) == [ProbeGate("linstor")]


def test_the_leader_publishes_health_on_every_flip_and_a_follower_never() -> None:
    """A flip is published (retained) by the leader; a follower keeps quiet."""
    leader, follower = Run(), Run(leader=False)
    for run in (leader, follower):
        run.actions.clear()
        run.healthy()
        run.unhealthy()
    flips = [(m.healthy, m.passes) for m in published(leader.actions, GateHealth)]
    assert flips == [(True, 3), (False, 0)]
    assert published(follower.actions, GateHealth) == []


def test_health_message_names_the_ready_nodes_and_the_publisher() -> None:
    """The retained health carries the satellites that are ONLINE and the leader's node."""
    run = Run()
    actions = run.healthy(nodes={"pve2", "pve1"})
    (msg,) = published(actions, GateHealth)
    assert msg.nodes_ready == ["pve1", "pve2"]
    assert msg.published_by == "pve1"
    assert msg.gate == "linstor"


def test_health_is_republished_before_the_hook_would_find_it_stale() -> None:
    """The leader refreshes every gate's retained health every health_refresh_s."""
    run = Run(settings(health_refresh_s=4.0))
    run.healthy()
    run.actions.clear()
    for _ in range(10):
        run.send(Tick(), after=1.0)
    assert len(published(run.actions, GateHealth)) == 2  # at +4 s and +8 s (well, >= those)


def test_a_result_for_an_unknown_gate_is_logged_and_ignored() -> None:
    """A probe result naming no configured gate changes nothing."""
    run = Run()
    before = run.state.gates
    run.send(ProbeResult(gate="nope", ok=True))
    assert run.state.gates == before


def test_starts_given_up_while_the_gate_flapped_get_new_tries_when_it_recovers() -> None:
    """A failed entry is held again with fresh retries once its gate recovers, and goes after a look."""
    run = Run(settings(start_retries=0))
    run.hold(101)
    run.healthy()
    run.send(StartResult(vmid=101, error="activation failed: controller unreachable", status=500))
    assert run.entry(101).state == "failed"
    run.unhealthy()
    run.healthy()
    e = run.entry(101)
    assert (e.state, e.tries, e.needs_check) == ("held", 0, True)
    assert of(run.send(observed(101), after=1.0), StartGuest) == [StartGuest(101, "pve1", "qemu")]
