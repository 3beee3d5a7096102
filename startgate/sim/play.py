"""One call that plays a scenario with or without startgate: what `startgate simulate` and `demo` run.

With startgate, the real hookscript and node agent always run; the coordinator runs when this build
has it. Without it the result says so plainly (`startgate = "hook + agent, no coordinator"` and a
note), so nothing ever claims a startgate run that did not happen: held starts stay held.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from startgate.sim import scenario as scn
from startgate.sim.bustap import BusRecord
from startgate.sim.clock import DEFAULT_SCALE
from startgate.sim.cluster import SimCluster
from startgate.sim.runner import MODE_NO_COORDINATOR, MODE_OFF, MODE_ON, Progress, SimResult, run_outage
from startgate.sim.startgate_side import StartgateSide

log = logging.getLogger(__name__)

SEED = "seed-outage.toml"


def seed_scenario() -> Path:
    """The packaged seed scenario (contrib/scenarios/seed-outage.toml)."""
    ref = resources.files("startgate") / "data" / "scenarios" / SEED
    return Path(str(ref))


# Real processes (hook, agent, coordinator) run in real time beside the scaled clock: a hook run
# (~0.1-0.5 s real on a busy machine) lasts 3-15 simulated s at 0.03, which keeps the story true.
SCALE_WITH_STARTGATE = 0.03
SCALE_WITHOUT = 0.01


def play(
    scenario: Path | scn.Scenario,
    *,
    with_startgate: bool,
    scale: float = DEFAULT_SCALE,
    broker_url: str | None = None,
    side: StartgateSide | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    say: Callable[[str], None] = log.info,
) -> SimResult:
    """Run the outage described by `scenario` and return the judged result.

    `side` replaces the default `StartgateSide(broker_url)` (tests pass their own options).
    """
    scen = scenario if isinstance(scenario, scn.Scenario) else scn.load(scenario)
    if not with_startgate:
        with SimCluster.from_scenario(scen, scale=scale) as sim:
            return run_outage(sim, startgate=MODE_OFF, on_progress=on_progress)
    side = side or StartgateSide(broker_url=broker_url)
    mode = MODE_ON
    notes: list[str] = []
    if side.missing():
        mode = MODE_NO_COORDINATOR
        msg = (
            f"coordinator: NOT available yet ({'; '.join(side.missing())}). The hook holds gated"
            " starts and records them on the bus, but nothing re-issues them, so held guests stay stopped"
        )
        say(msg)
        notes.append(msg)
    with SimCluster.from_scenario(scen, scale=scale) as sim:
        try:
            side.start(sim)
            notes.append(
                f"broker {side.broker_url}; startgate files of each node under {sim.root}/node-roots"
            )
            notes.append(attached(sim, side))
            result = run_outage(sim, startgate=mode, on_progress=on_progress)
        finally:
            side.stop()
        notes += side.notes + bus_summary(side.bus()) + side.problems()
    return dataclasses.replace(result, notes=notes + result.notes, bus=side.bus())


def attached(sim: SimCluster, side: StartgateSide) -> str:
    """Which guests got the hookscript (members) and which did not, and why."""
    members = ", ".join(str(v) for v in sorted(side.members)) or "none"
    gate_vms = {g.vmid: g.name for g in sim.scenario.gates if g.vmid is not None}
    others = []
    for vmid in sorted(set(sim.guests) - set(side.members)):
        why = f"gate {gate_vms[vmid]}'s own VM" if vmid in gate_vms else "member of no gate"
        others.append(f"{vmid} ({why})")
    text = f"hookscript attached to the members: {members}"
    return text + (f"; not to {', '.join(others)}" if others else "")


def bus_summary(record: BusRecord) -> list[str]:
    """A few lines on what reached the broker (validated by startgate.bus.messages)."""
    held = record.held()
    events = record.guest_events()
    holds = sum(1 for e in events if e.decision == "hold")
    allows = sum(1 for e in events if e.decision == "allow")
    online = record.nodes_seen_online()
    held_list = ", ".join(str(v) for v in sorted(held)) or "none"
    first = (
        f"on the bus: {len(held)} held record(s) ({held_list}); {len(events)} guest event(s), "
        f"{holds} hold / {allows} allow decisions; agents seen online: {', '.join(online) or 'none'}"
    )
    lines = [first]
    if record.invalid:
        lines.append(
            f"on the bus: {len(record.invalid)} message(s) did not validate, e.g. {record.invalid[0].reason}"
        )
    return lines
