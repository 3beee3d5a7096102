"""Wall time of the seed outage on the scaled clock (target: under 15 s), without startgate.

Usage: .venv/bin/python bench/sim_seed.py [--runs N] [--scale S]
"""

from __future__ import annotations

import argparse
import statistics
import time

from startgate.sim.play import play, seed_scenario


def main() -> None:
    """Play the seed outage a few times and print the wall-clock figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scale", type=float, default=0.01)
    args = ap.parse_args()
    walls = []
    for i in range(args.runs):
        t0 = time.monotonic()
        result = play(seed_scenario(), with_startgate=False, scale=args.scale)
        wall = time.monotonic() - t0
        walls.append(wall)
        print(
            f"run {i + 1}: {wall:.2f} s wall (sim {result.sim_s:.0f} s, ended {result.end}, "
            f"{len(result.events)} events, ok={result.ok})"
        )
    med = statistics.median(walls)
    print(
        f"seed outage without startgate, scale {args.scale:g}: "
        f"median {med:.2f} s wall, max {max(walls):.2f} s"
    )


if __name__ == "__main__":
    main()
