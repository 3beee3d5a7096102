"""What `make soak` does in a round and how it judges and prints the whole soak (no I/O here).

A round is one total outage of the soak cluster (startgate/data/scenarios/soak.toml) with one to
three faults drawn at random (`plan_round`). Some faults are scenario faults the sim plays itself
(broker down, controller flapping, API errors and timeouts, a node that never returns); two are
done to the real processes while the coordinator releases held starts (`Action`): its leader
SIGKILLed and restarted as systemd would, or the leader's node powered off for good.
`RoundResult` is what a round measured; `Soak` adds rounds up and renders the table.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, get_args

from startgate.sim import scenario as scn

FaultKind = Literal[
    "broker_restart",
    "coordinator_sigkill",
    "leader_node_lost",
    "controller_flapping",
    "api_5xx",
    "api_timeout",
    "node_never_returns",
]
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
# Each takes a node away; two of three gone is no quorum, and then nothing may start at all.
_NODE_LOSSES = frozenset({"leader_node_lost", "node_never_returns"})
Action = Literal["coordinator_sigkill", "leader_node_lost"]
# Only API calls that change or report guests: a 5xx on every path would also fail the hook's and
# the agent's own reads, which is a different fault (the API down) that the coordinator only waits out.
_API_PATHS = ("/status/start", "/tasks/", "/cluster/resources", "")
# Simulated seconds; the coordinator's API timeout is 5 real s, 167 simulated s at scale 0.03.
API_TIMEOUT_DELAY_S = 200.0


@dataclass(frozen=True)
class RoundPlan:
    """One round: the faults drawn, the scenario with its scenario faults, the actions to do."""

    number: int
    kinds: tuple[FaultKind, ...]
    scenario: scn.Scenario
    actions: tuple[Action, ...]


def plan_round(
    rng: random.Random, base: scn.Scenario, number: int, kinds: tuple[FaultKind, ...] | None = None
) -> RoundPlan:
    """Draw this round's faults (or take `kinds`) and build its scenario; pure given `rng`."""
    if kinds is None:
        count = rng.randint(1, 3)
        drawn: list[FaultKind] = []
        for kind in rng.sample(FAULT_KINDS, len(FAULT_KINDS)):
            if len(drawn) == count:
                break
            if kind in _NODE_LOSSES and _NODE_LOSSES & set(drawn):
                continue
            drawn.append(kind)
        kinds = tuple(sorted(drawn, key=FAULT_KINDS.index))
    if len(_NODE_LOSSES & set(kinds)) > 1:
        raise ValueError(f"round {number}: at most one of {sorted(_NODE_LOSSES)} per round")
    faults: list[scn.Fault] = []
    nodes = [n.name for n in base.nodes]
    for kind in kinds:
        start = rng.uniform(20.0, 110.0)
        if kind == "broker_restart":
            faults.append(
                scn.BrokerDown(kind="broker_down", from_s=start, until_s=start + rng.uniform(5, 50))
            )
        elif kind == "controller_flapping":
            gate = base.gates[0].name
            faults.append(
                scn.ControllerFlapping(
                    kind="controller_flapping",
                    gate=gate,
                    from_s=start,
                    until_s=start + rng.uniform(20, 60),
                    period_s=rng.uniform(6.0, 20.0),
                )
            )
        elif kind == "api_5xx":
            faults.append(
                scn.ApiErrors(
                    kind="api_errors",
                    from_s=start,
                    until_s=start + rng.uniform(10, 40),
                    status=rng.choice((500, 502, 503)),
                    path=rng.choice(_API_PATHS),
                )
            )
        elif kind == "api_timeout":
            faults.append(
                scn.ApiErrors(
                    kind="api_errors",
                    from_s=start,
                    until_s=start + rng.uniform(10, 30),
                    status=504,
                    delay_s=API_TIMEOUT_DELAY_S,
                    path=rng.choice(_API_PATHS[:3]),
                )
            )
        elif kind == "node_never_returns":
            faults.append(scn.NodeNeverReturns(kind="node_never_returns", node=rng.choice(nodes)))
    scenario = base.model_copy(
        update={"name": f"{base.name} round {number}", "faults": [*base.faults, *faults]}
    )
    scenario = scn.Scenario.model_validate(scenario.model_dump())  # the references checked again
    actions = tuple(k for k in kinds if k in ("coordinator_sigkill", "leader_node_lost"))
    return RoundPlan(number, kinds, scenario, actions)


Rule = Literal["should_run", "gated", "twice", "held_left", "exited", "not_done"]
RULES: tuple[Rule, ...] = get_args(Rule)


@dataclass(frozen=True)
class RoundResult:
    """What one round measured."""

    number: int
    kinds: tuple[FaultKind, ...]
    end: str  # the runner's end: settled, quiet, deadline
    started: int  # guest_running events
    violations: tuple[tuple[Rule, str], ...]
    rss_peak_kib: int  # the largest coordinator process seen in the round
    fds_peak: int
    actions_done: tuple[str, ...] = ()
    wall_s: float = 0.0


@dataclass
class Soak:
    """The rounds so far, and the table `make soak` prints."""

    seed: int
    scale: float
    rounds: list[RoundResult] = field(default_factory=list)

    def faults(self) -> Counter[str]:
        """How often each kind of fault was injected."""
        return Counter(k for r in self.rounds for k in r.kinds)

    def violations(self) -> Counter[str]:
        """Violations by rule."""
        return Counter(rule for r in self.rounds for rule, _ in r.violations)

    def flat(self) -> tuple[bool, bool]:
        """(RSS flat, fds flat): the later half of the rounds peaks no higher than the first half, with slack.

        Slack: 20 % + 8 MiB of RSS (allocator and import noise between processes), 8 fds (a
        reconnect in flight holds a socket or two).
        """
        if len(self.rounds) < 2:
            return True, True
        half = len(self.rounds) // 2
        early, late = self.rounds[:half], self.rounds[half:]
        rss = max(r.rss_peak_kib for r in late) <= max(r.rss_peak_kib for r in early) * 1.2 + 8192
        fds = max(r.fds_peak for r in late) <= max(r.fds_peak for r in early) + 8
        return rss, fds

    @property
    def ok(self) -> bool:
        """No violation, and memory and descriptors flat."""
        return not self.violations() and all(self.flat()) and bool(self.rounds)

    def table(self, minutes: float) -> list[str]:
        """The report: one line a round, then the totals."""
        lines = [
            (
                f"startgate soak: {len(self.rounds)} round(s) in {minutes:.1f} min"
                f" (seed {self.seed}, scale {self.scale:g}); each round a total outage of the soak cluster"
            ),
            f"{'round':>5}  {'faults':<58} {'started':>7} {'viol.':>5} {'RSS peak':>9} {'fds':>4}  end",
        ]
        for r in self.rounds:
            lines.append(
                f"{r.number:>5}  {', '.join(r.kinds):<58} {r.started:>7} {len(r.violations):>5}"
                f" {r.rss_peak_kib / 1024:>5.1f} MiB {r.fds_peak:>4}  {r.end}"
            )
            lines += [f"         !! {rule}: {detail}" for rule, detail in r.violations]
        faults = self.faults()
        viol = self.violations()
        rss_flat, fds_flat = self.flat()
        peak = max((r.rss_peak_kib for r in self.rounds), default=0)
        fds = max((r.fds_peak for r in self.rounds), default=0)
        lines += [
            "",
            f"rounds                 {len(self.rounds)}",
            "faults injected        "
            + (", ".join(f"{k} {faults[k]}" for k in FAULT_KINDS if faults[k]) or "none"),
            f"guests started         {sum(r.started for r in self.rounds)}",
            f"violations             {sum(viol.values())} ("
            + ", ".join(f"{rule} {viol[rule]}" for rule in RULES)
            + ")",
            f"coordinator peak RSS   {peak / 1024:.1f} MiB ({_trend(rss_flat)})",
            f"coordinator peak fds   {fds} ({_trend(fds_flat)})",
            f"result                 {'ok' if self.ok else 'FAILED'}",
        ]
        return lines


def _trend(flat: bool) -> str:
    return "flat across rounds" if flat else "GROWING across rounds"
