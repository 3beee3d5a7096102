"""Wall time of the seed outage on the scaled clock (target: under 15 s), with and without startgate.

`python -m bench.sim_seed [--json] [--quick]`; the with-startgate run uses the demo's own scale.
"""

from __future__ import annotations

import time

from bench.report import Figure, emit, median, parse_args
from startgate.sim.play import SCALE_WITH_STARTGATE, SCALE_WITHOUT, play, seed_scenario


def wall(with_startgate: bool) -> tuple[float, float, bool]:
    """One seed outage: wall seconds, simulated seconds, and whether the invariants held."""
    scale = SCALE_WITH_STARTGATE if with_startgate else SCALE_WITHOUT
    t0 = time.monotonic()
    result = play(seed_scenario(), with_startgate=with_startgate, scale=scale)
    return time.monotonic() - t0, result.sim_s, result.ok


def main() -> None:
    """Play the seed outage a few times each way and report the median wall time."""
    args = parse_args(__doc__ or "")
    runs = 1 if args.quick else 3
    figures = []
    for with_sg, label in ((False, "without startgate"), (True, "with startgate")):
        results = [wall(with_sg) for _ in range(runs)]
        walls = [r[0] for r in results]
        value = median(walls)
        ok_runs = sum(r[2] for r in results)
        figures.append(
            Figure(
                name=f"sim: seed outage wall time, {label}",
                value=value,
                unit="s",
                target="< 15 s",
                baseline=f"{median([r[1] for r in results]):.0f} sim s; invariants held {ok_runs}/{runs}",
                ok=value < 15,
            )
        )
    emit(figures, args.json)


if __name__ == "__main__":
    main()
