"""The soak under faults: its fault draw, its judging and table, and a short soak of real rounds."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from startgate.sim import scenario as scn
from startgate.sim.soak import base_scenario, play_round, proc_usage
from startgate.sim.soak_plan import FAULT_KINDS, RoundResult, Soak, plan_round


def _result(number: int, rss_kib: int = 50_000, fds: int = 11, **kw: object) -> RoundResult:
    base: dict[str, object] = {
        "number": number,
        "kinds": ("api_5xx",),
        "end": "settled",
        "started": 8,
        "violations": (),
        "rss_peak_kib": rss_kib,
        "fds_peak": fds,
    }
    base.update(kw)
    return RoundResult(**base)  # type: ignore[arg-type]  # test data of the right types


def test_the_fault_draw_is_reproducible_and_never_takes_two_nodes() -> None:
    """The same seed draws the same rounds; a round never loses two nodes (quorum would be gone)."""
    base = base_scenario()
    first = [plan_round(random.Random(5), base, n) for n in range(1, 4)]
    again = [plan_round(random.Random(5), base, n) for n in range(1, 4)]
    assert [p.kinds for p in first] == [p.kinds for p in again]
    rng = random.Random(1)
    seen: set[str] = set()
    for n in range(200):
        plan = plan_round(rng, base, n)
        seen.update(plan.kinds)
        assert 1 <= len(plan.kinds) <= 3
        assert not {"leader_node_lost", "node_never_returns"} <= set(plan.kinds)
        assert set(plan.actions) == set(plan.kinds) & {"coordinator_sigkill", "leader_node_lost"}
    assert seen == set(FAULT_KINDS)


def test_a_round_plan_turns_kinds_into_scenario_faults() -> None:
    """Scenario faults land in the round's scenario; process faults become actions."""
    plan = plan_round(
        random.Random(2),
        base_scenario(),
        7,
        ("broker_restart", "coordinator_sigkill", "controller_flapping", "api_timeout"),
    )
    kinds = sorted(type(f).__name__ for f in plan.scenario.faults)
    assert kinds == ["ApiErrors", "BrokerDown", "ControllerFlapping"]
    timeout = next(f for f in plan.scenario.faults if isinstance(f, scn.ApiErrors))
    assert timeout.delay_s > 0
    assert plan.actions == ("coordinator_sigkill",)
    assert plan.scenario.name == "soak round 7"


def test_two_node_losses_in_one_round_are_refused() -> None:
    """Asking for both node faults at once is a usage error, not a quorum-less round."""
    with pytest.raises(ValueError, match="at most one"):
        plan_round(random.Random(0), base_scenario(), 1, ("leader_node_lost", "node_never_returns"))


def test_the_table_counts_faults_and_violations_and_judges_growth() -> None:
    """Totals by kind and rule; memory that keeps growing across rounds fails the soak."""
    soak = Soak(seed=3, scale=0.03)
    soak.rounds = [
        _result(1),
        _result(2, kinds=("broker_restart", "api_5xx"), violations=(("held_left", "101 runs"),)),
    ]
    table = "\n".join(soak.table(1.0))
    assert "faults injected        broker_restart 1, api_5xx 2" in table
    assert "violations             1 (should_run 0, gated 0, twice 0, held_left 1" in table
    assert "!! held_left: 101 runs" in table
    assert not soak.ok
    soak.rounds = [_result(1), _result(2, rss_kib=52_000), _result(3, rss_kib=51_000)]
    assert soak.ok
    soak.rounds.append(_result(4, rss_kib=200_000))
    assert soak.flat() == (False, True)
    assert "GROWING" in "\n".join(soak.table(1.0))


def test_proc_usage_reads_this_process_and_a_gone_one() -> None:
    """RSS and descriptors come from /proc; a process that is gone reads as zeros."""
    rss, fds = proc_usage(os.getpid())
    assert rss > 1000
    assert fds >= 3
    assert proc_usage(2**22 + 1) == (0, 0)


def _coordinator_logs(root: Path) -> str:
    """The coordinators' own account of a failed round (INFO and up), for the failure message."""
    lines = []
    for path in sorted(root.glob("round-*/node-roots/*/var/log/startgate/coordinator.log")):
        lines.append(f"== {path.parts[-5]}")
        lines += [ln for ln in path.read_text(errors="replace").splitlines() if not ln.startswith("DEBUG")][
            -60:
        ]
    return "\n".join(lines)


@pytest.mark.parametrize(
    "kinds",
    [
        ("broker_restart", "coordinator_sigkill", "controller_flapping"),
        ("leader_node_lost", "api_5xx", "api_timeout"),
        ("node_never_returns", "broker_restart"),
    ],
)
def test_a_short_soak_round_keeps_every_promise(kinds: tuple[str, ...], tmp_path: Path) -> None:
    """A total outage with these faults: every wanted guest runs once, gated, no held record left."""
    plan = plan_round(random.Random(1), base_scenario(), 1, kinds)  # type: ignore[arg-type]  # FaultKinds
    result = play_round(plan, keep=tmp_path)
    assert result.violations == (), _coordinator_logs(tmp_path)
    assert result.end == "settled"
    assert result.started >= 5
    assert result.rss_peak_kib > 0
    assert len(result.actions_done) == len(plan.actions)
