"""The shape every benchmark script reports in, so `make bench` can collect one table.

A bench script measures, prints its figures for a human, and with `--json` prints exactly one JSON
line: a list of `Figure` objects. bench/run.py runs every script and prints (and can write into the
README's "Performance" section) one table with each figure beside its target and its baseline.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Figure:
    """One measured figure, its target and the baseline measured in the same run."""

    name: str
    value: float
    unit: str
    target: str = ""  # e.g. "<= 100 ms"
    baseline: str = ""  # e.g. "python3 -c pass: 16 ms"
    ok: bool | None = None  # None when the figure has no target


def median(values: list[float]) -> float:
    """The median of measured values."""
    return statistics.median(values)


def parse_args(description: str) -> argparse.Namespace:
    """The options every bench script takes (--json, --quick)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", action="store_true", help="print one JSON line of figures")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    return parser.parse_args()


def emit(figures: list[Figure], as_json: bool) -> None:
    """Print the figures: a table for people, or one JSON line for bench/run.py."""
    if as_json:
        print(json.dumps([asdict(f) for f in figures]))
        return
    for f in figures:
        verdict = "" if f.ok is None else ("  ok" if f.ok else "  MISSED")
        print(f"{f.name:48s} {f.value:12.3f} {f.unit:6s} target {f.target or '-':12s} {f.baseline}{verdict}")
