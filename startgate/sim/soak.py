"""`make soak`: total outages of a simulated cluster, one after another, while faults are injected.

`startgate soak --minutes 5 [--seed N] [--rounds N]` (`make soak`). Every round is a fresh cold
boot of the soak cluster (a total outage ends every process on a real cluster too) with the real
hookscript, node agents and coordinators, and a real Mosquitto that keeps its retained messages on
disk like contrib/mosquitto/startgate.conf (saved every 2 real s, 60 simulated s at scale 0.03).
The faults of a round come from `soak_plan.plan_round`; after the round settles it is judged:
- the sim's three invariants (every guest that should run runs; none started while its gate was
  unhealthy; none started twice),
- no retained `held/<vmid>` record left for a running guest (read from the broker afresh),
- no startgate service exited on its own while its node was up,
and the coordinator processes' RSS and open descriptors are sampled through the round.
`Soak.ok` when nothing was violated and the peaks stayed flat (the command exits 0, else 1).
"""

from __future__ import annotations

import logging
import random
import shutil
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from startgate.bus import messages
from startgate.bus.topics import Topics
from startgate.sim import report
from startgate.sim import scenario as scn
from startgate.sim.bustap import retained_now
from startgate.sim.cluster import SimCluster
from startgate.sim.runner import MODE_ON, SimResult, run_outage
from startgate.sim.soak_plan import Action, RoundPlan, RoundResult, Rule, Soak, plan_round
from startgate.sim.startgate_side import StartgateSide

log = logging.getLogger(__name__)

SCALE = 0.03
BROKER_AUTOSAVE_S = 2
HELD_CLEAR_WAIT_S = 10.0  # real seconds the coordinator gets to clear held records after the run settles
SAMPLE_S = 0.25


def base_scenario() -> scn.Scenario:
    """The packaged soak cluster (startgate/data/scenarios/soak.toml)."""
    return scn.load(Path(str(resources.files("startgate") / "data" / "scenarios" / "soak.toml")))


def proc_usage(pid: int) -> tuple[int, int]:
    """(RSS in KiB, open descriptors) of a process; (0, 0) once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
        fds = sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())
    except (OSError, ValueError):
        return 0, 0
    rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return rss, fds


class _Round:
    """One round in flight: the sim, the startgate side, the sampler and the fault actions."""

    def __init__(self, plan: RoundPlan, scale: float, keep: Path | None) -> None:
        self.plan = plan
        self.side = StartgateSide(broker_autosave_s=BROKER_AUTOSAVE_S)
        self.keep = keep / f"round-{plan.number}" if keep is not None else None
        self.sim = SimCluster.from_scenario(plan.scenario, scale=scale, workdir=self.keep)
        self.result: list[SimResult] = []
        self.done = threading.Event()
        self.rss_peak = 0
        self.fds_peak = 0
        self.actions_done: list[str] = []

    def leader(self) -> str | None:
        """The node whose coordinator said last that it leads."""
        states = [
            m
            for m in self.side.bus().of(messages.CoordinatorStatus)
            if isinstance(m, messages.CoordinatorStatus)
        ]
        leaders = [m.node for m in states if m.state == "leader"]
        return leaders[-1] if leaders else None

    def coordinator_started_something(self) -> bool:
        """A coordinator has issued a start (the release is under way)."""
        return any(
            e.kind == "start_requested" and e.source.startswith("api:") for e in self.sim.events.snapshot()
        )

    def _wait(self, pred: Callable[[], bool], timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not self.done.is_set():
            if pred():
                return True
            self.done.wait(0.05)
        return False

    def _act(self, action: Action) -> None:
        # In the middle of the release: the moment a lost leader costs the most.
        if not self._wait(self.coordinator_started_something, 60.0):
            return
        services = self.side.services
        # The leader's status may still be on its way (the broker can be down right now).
        if services is None or not self._wait(lambda: self.leader() is not None, 30.0):
            return
        node = self.leader()
        if node is None:
            return
        if action == "coordinator_sigkill":
            if not self._wait(lambda: services.kill(node, "coordinator"), 30.0):
                return
            self.sim.events.add("fault", node=node, detail="coordinator SIGKILLed")
            self.done.wait(0.3)  # systemd's RestartSec
            services.respawn(node, "coordinator")
        else:
            self.sim.kill_node(node)
        self.actions_done.append(f"{action} on {node}")

    def _sample(self) -> None:
        while not self.done.wait(SAMPLE_S):
            services = self.side.services
            if services is None:
                continue
            for node in self.sim.nodes:
                pid = services.running(node, "coordinator")
                if pid is not None:
                    rss, fds = proc_usage(pid)
                    self.rss_peak = max(self.rss_peak, rss)
                    self.fds_peak = max(self.fds_peak, fds)

    def play(self) -> RoundResult:
        wall0 = time.monotonic()
        with self.sim:
            try:
                self.side.start(self.sim)
                helpers = [threading.Thread(target=self._sample, daemon=True, name="soak-sample")]
                helpers += [
                    threading.Thread(target=self._act, args=(a,), daemon=True, name=f"soak-{a}")
                    for a in self.plan.actions
                ]
                for t in helpers:
                    t.start()
                result = run_outage(self.sim, startgate=MODE_ON)
                if self.keep is not None:
                    # What the sim saw, next to the services' logs: a violation can be replayed in full.
                    report.write_json(result, self.keep / "sim.json")
                held_left = self._held_left(result)
                self.done.set()
                for t in helpers:
                    t.join(5.0)
            finally:
                self.done.set()
                self.side.stop()
            problems = self.side.problems()
        return self._judge(result, held_left, problems, time.monotonic() - wall0)

    def _held_left(self, result: SimResult) -> list[str]:
        """Running guests whose held record the broker keeps after the coordinator had time to clear it."""
        running = {o.vmid for o in result.outcomes if o.running}
        topics = Topics(self.side.topic_prefix, self.sim.scenario.cluster)
        end = time.monotonic() + HELD_CLEAR_WAIT_S
        while True:
            left = sorted(running & set(retained_now(self.side.broker_url, topics).held_now()))
            if not left or time.monotonic() >= end:
                return [f"{vmid} runs but held/{vmid} is still retained" for vmid in left]
            self.done.wait(0.5)

    def _judge(
        self, result: SimResult, held_left: list[str], problems: list[str], wall: float
    ) -> RoundResult:
        violations: list[tuple[Rule, str]] = [(v.rule, v.detail) for v in result.invariants.violations]
        violations += [("held_left", h) for h in held_left]
        violations += [("exited", p) for p in problems]
        if result.end == "deadline":
            violations.append(("not_done", f"still not settled after {result.sim_s:.0f} simulated s"))
        return RoundResult(
            number=self.plan.number,
            kinds=self.plan.kinds,
            end=result.end,
            started=sum(1 for e in result.events if e.kind == "guest_running"),
            violations=tuple(violations),
            rss_peak_kib=self.rss_peak,
            fds_peak=self.fds_peak,
            actions_done=tuple(self.actions_done),
            wall_s=wall,
        )


def play_round(plan: RoundPlan, scale: float = SCALE, keep: Path | None = None) -> RoundResult:
    """Play one planned round and judge it; `keep`: leave its files (logs, bus, state) under keep/round-N."""
    return _Round(plan, scale, keep).play()


def soak(
    minutes: float,
    seed: int,
    *,
    max_rounds: int | None = None,
    scale: float = SCALE,
    say: Callable[[str], None] = print,
    keep: Path | None = None,
) -> Soak:
    """Rounds until `minutes` of wall time are used (or `max_rounds` are played).

    `keep`: the files of each round with a violation (service logs, state, broker) stay in
    keep/round-N for a look; those of clean rounds are removed.
    """
    rng = random.Random(seed)  # noqa: S311 - fault choice, not cryptography
    base = base_scenario()
    result = Soak(seed=seed, scale=scale)
    deadline = time.monotonic() + minutes * 60.0
    number = 0
    while time.monotonic() < deadline and (max_rounds is None or number < max_rounds):
        number += 1
        plan = plan_round(rng, base, number)
        r = play_round(plan, scale, keep)
        result.rounds.append(r)
        if keep is not None and not r.violations:
            shutil.rmtree(keep / f"round-{number}", ignore_errors=True)
        say(
            f"round {number}: {', '.join(plan.kinds)} -> {r.end}, {r.started} started,"
            f" {len(r.violations)} violation(s), {r.wall_s:.1f} s"
        )
    return result
