"""One call that plays a scenario with or without startgate: what `startgate simulate` and `demo` run.

With startgate asked for but not (yet) built, it says which parts are missing and plays the
outage without them; the result records that (`startgate = "unavailable: ..."`), so nothing ever
claims a startgate run that did not happen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from startgate.sim import scenario as scn
from startgate.sim.clock import DEFAULT_SCALE
from startgate.sim.cluster import SimCluster
from startgate.sim.runner import Progress, SimResult, run_outage
from startgate.sim.startgate_side import StartgateSide

log = logging.getLogger(__name__)

SEED = "seed-outage.toml"


def seed_scenario() -> Path:
    """The packaged seed scenario (contrib/scenarios/seed-outage.toml)."""
    ref = resources.files("startgate") / "data" / "scenarios" / SEED
    return Path(str(ref))


def play(
    scenario: Path | scn.Scenario,
    *,
    with_startgate: bool,
    scale: float = DEFAULT_SCALE,
    broker_url: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    say: Callable[[str], None] = log.info,
) -> SimResult:
    """Run the outage described by `scenario` and return the judged result."""
    scen = scenario if isinstance(scenario, scn.Scenario) else scn.load(scenario)
    side: StartgateSide | None = None
    mode = "off"
    notes: list[str] = []
    if with_startgate:
        candidate = StartgateSide(broker_url=broker_url)
        missing = candidate.missing()
        if missing:
            mode = "unavailable: not built yet: " + ", ".join(missing)
            msg = (
                "the startgate side is not available yet (missing " + ", ".join(missing) + "); "
                "running the outage WITHOUT startgate, so it shows the failure, not the fix"
            )
            say(msg)
            notes.append(msg)
        else:
            side, mode = candidate, "on"
    with SimCluster.from_scenario(scen, scale=scale) as sim:
        try:
            if side is not None:
                side.start(sim)
                notes.append(f"broker {side.broker_url}")
            return run_outage(sim, startgate=mode, on_progress=on_progress, notes=notes)
        finally:
            if side is not None:
                side.stop()
