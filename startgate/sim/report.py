"""Printing a run: the timeline, the summary table, the progress line, and the JSON document.

Everything here reads a finished `SimResult` (or a `Progress` snapshot); nothing feeds back into
the simulation or decides the exit code.
"""

from __future__ import annotations

import json
import statistics
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from startgate.sim.events import SimEvent
from startgate.sim.invariants import Rule
from startgate.sim.runner import MODE_NO_COORDINATOR, MODE_OFF, Progress, SimResult

_SHOWN = {
    "node_up", "node_down", "quorum", "startall", "start_requested", "start_refused", "held", "start_failed",
    "guest_running", "guest_stopped", "gate_healthy", "gate_unhealthy", "ha_state", "fault", "note",
}  # fmt: skip


WIDTH = 100  # every line fits a terminal this wide

_STAGES = {
    "volumes": "start FAILED in the storage plugin",
    "volumes-before-hook": (
        "start FAILED in the storage plugin, before pre-start (a container activates its volumes"
        " first: the hook never ran)"
    ),
    "hook": "start FAILED: hookscript",
    "lock": "start FAILED taking the config lock",
}


def _failed(e: SimEvent) -> str:
    return f"{_STAGES.get(e.stage, 'start FAILED')}: {e.detail}"


def _wrap(text: str, head: str = "", indent: int | None = None, width: int = WIDTH) -> list[str]:
    """`text` after `head`, wrapped to `width`, continuation lines indented under the text."""
    pad = " " * (len(head) if indent is None else indent)
    return textwrap.wrap(
        text, width=width, initial_indent=head, subsequent_indent=pad, break_on_hyphens=False
    ) or [head.rstrip()]


def _who(e: SimEvent, kinds: dict[int, str]) -> str:
    if e.vmid is None:
        return ""
    return f"{kinds.get(e.vmid, 'VM')} {e.vmid}"


def _started(e: SimEvent) -> str:
    bad = f"  !! gate(s) {', '.join(e.unhealthy_gates)} NOT healthy" if e.unhealthy_gates else ""
    return f"RUNNING (started by {e.source}){bad}"


_WHAT: dict[str, Callable[[SimEvent], str]] = {
    "node_up": lambda _e: "node up",
    "node_down": lambda e: f"node down {e.detail}".strip(),
    "quorum": lambda _e: "quorate",
    "startall": lambda e: f"startall {'begins' if e.detail == 'begin' else 'done'}",
    "start_requested": lambda e: (
        f"start requested by {e.source}"
        + (" (hastart: only sets the HA state)" if e.detail == "hastart" else "")
    ),
    "start_refused": lambda e: f"start refused: {e.detail}",
    "held": lambda e: f'HELD (hook exit 1): "{e.detail}"',
    "start_failed": _failed,
    "guest_running": _started,
    "guest_stopped": lambda e: f"stopped {e.detail}".strip(),
    "gate_healthy": lambda e: f"gate {e.detail} healthy (controller /health 200)",
    "gate_unhealthy": lambda e: f"gate {e.detail} unhealthy",
    "ha_state": lambda e: f"HA {e.detail}",
}


def _what(e: SimEvent) -> str:
    fn = _WHAT.get(e.kind)
    return fn(e) if fn is not None else e.detail


def header(result: SimResult) -> list[str]:
    """What ran: with or without startgate, and which parts of it."""
    if result.startgate == MODE_OFF:
        what = "startgate: OFF (no hook, no agent, no coordinator): the failure startgate exists to prevent"
    else:
        what = f"startgate: {result.startgate} on every node"
    return _wrap(what)


def timeline(result: SimResult) -> list[str]:
    """One entry per notable event (time, node, guest, what happened), wrapped to WIDTH."""
    kinds = {o.vmid: o.kind for o in result.outcomes}
    lines: list[str] = []
    for e in result.events:
        if e.kind in _SHOWN:
            lines += _wrap(_what(e), f"{e.t:8.1f}s  {e.node:<6} {_who(e, kinds):<8} ")
    return lines


def _by_vmid(result: SimResult) -> dict[int, list[SimEvent]]:
    by_vmid: dict[int, list[SimEvent]] = {}
    for e in result.events:
        if e.vmid is not None:
            by_vmid.setdefault(e.vmid, []).append(e)
    return by_vmid


def summary(result: SimResult) -> list[str]:
    """A table: one row per guest with its attempts, holds, first run and final state."""
    head = (
        f"{'VMID':>5} {'type':<3} {'name':<14} {'node':<6} {'HA':<8} {'gates':<10} {'tries':>5} {'held':>4} "
    )
    head += f"{'running at':>10}  final"
    rows = [head, "-" * len(head)]
    by_vmid = _by_vmid(result)
    for o in result.outcomes:
        evs = by_vmid.get(o.vmid, [])
        tries = sum(1 for e in evs if e.kind == "start_requested" and e.detail != "hastart")
        held = sum(1 for e in evs if e.kind == "held")
        ran = next((e.t for e in evs if e.kind == "guest_running"), None)
        final = "running" if o.running else "stopped"
        if o.should_run and not o.running:
            final += "  <-- should run"
        elif not o.wanted:
            final += " (not onboot)"
        ran_s = f"{ran:9.1f}s" if ran is not None else "-"
        rows.append(
            f"{o.vmid:>5} {o.kind:<3} {o.name[:14]:<14} {o.node:<6} {o.ha or '-':<8} "
            f"{','.join(o.gates) or '-':<10} {tries:>5} {held:>4} {ran_s:>10}  {final}"
        )
    rows.append("(tries: starts asked for by startall, HA or the API; held: refused by the startgate hook)")
    return rows


def why_stopped(result: SimResult, vmid: int) -> str:
    """Why a guest that should run is stopped, from the run's own events."""
    evs = _by_vmid(result).get(vmid, [])
    held = [e for e in evs if e.kind == "held"]
    failed = [e for e in evs if e.kind == "start_failed"]
    out = []
    if held:
        out.append(f"held by the hook {len(held)}x (first at {held[0].t:.1f}s)")
    if failed:
        where = {"volumes": " in the storage plugin", "volumes-before-hook": " in the storage plugin"}
        out.append(
            f"start failed{where.get(failed[-1].stage, '')} {len(failed)}x (last at {failed[-1].t:.1f}s)"
        )
        if failed[-1].stage == "volumes-before-hook":
            out.append("a container activates its volumes before pre-start, so the hook never ran")
    final = next((o for o in result.outcomes if o.vmid == vmid), None)
    if final is not None and final.ha == "error":
        out.append("HA gave up (state error; leaving it needs `disabled`, then `started`)")
    if not held and not failed:
        out.append("no start of it was ever tried")
    if result.startgate == MODE_NO_COORDINATOR:
        out.append("nothing re-issued it: there is no coordinator yet")
    elif result.startgate == MODE_OFF:
        out.append("nothing tried again once the gate was healthy")
    return "; ".join(out)


def hook_timing(result: SimResult) -> list[str]:
    """How long the real hook processes ran (real time, which the scaled clock magnifies)."""
    runs = [e.real_ms for e in result.events if e.kind == "hook" and e.real_ms is not None]
    if not runs:
        return []
    longest = max(runs)
    text = (
        f"hook runs: {len(runs)}, median {statistics.median(runs):.0f} ms, longest {longest} ms real time"
        f" (= {longest / 1000 / result.scale:.0f} simulated s at scale {result.scale:g}; real processes"
        " share this machine's cores, real nodes do not)"
    )
    return [text]


def verdict(result: SimResult) -> list[str]:
    """The closing lines: how the run ended and whether each property held, wrapped to WIDTH."""
    inv = result.invariants
    ended = (
        f"ended {result.end} after {result.sim_s:.0f} simulated s ({result.wall_s:.1f} s wall, "
        f"scale {result.scale:g}: 1 simulated s = {result.scale * 1000:g} ms real)"
    )
    lines = _wrap(ended)
    for n in [*result.notes, *hook_timing(result)]:
        lines += _wrap(n, "note: ")
    checks: tuple[tuple[str, Rule], ...] = (
        ("every guest that should run ends running", "should_run"),
        ("none started before its gates were healthy", "gated"),
        ("none started twice", "twice"),
    )
    for text, rule in checks:
        bad = inv.by_rule(rule)
        lines.append(f"  [{'ok' if not bad else 'FAIL'}] {text}")
        for v in bad:
            why = f": {why_stopped(result, v.vmid)}" if rule == "should_run" else ""
            lines += _wrap(v.detail + why, " " * 9, indent=11)
    if result.stalled:
        lines.append(f"  stalled: {len(result.blocked_tasks)} start task(s) still blocked at the end")
    lines.append("OK" if result.ok else "NOT OK")
    return lines


def to_json(result: SimResult) -> dict[str, Any]:
    """The whole result as a JSON-ready mapping."""
    return {
        "scenario": result.scenario,
        "scale": result.scale,
        "startgate": result.startgate,
        "end": result.end,
        "sim_seconds": round(result.sim_s, 3),
        "wall_seconds": round(result.wall_s, 3),
        "ok": result.ok,
        "stalled": result.stalled,
        "invariants": {
            "should_run": list(result.invariants.should_run),
            "running": list(result.invariants.running),
            "violations": [
                {"rule": v.rule, "vmid": v.vmid, "detail": v.detail} for v in result.invariants.violations
            ],
        },
        "guests": [o.__dict__ | {"should_run": o.should_run} for o in result.outcomes],
        "blocked_tasks": result.blocked_tasks,
        "notes": result.notes,
        "events": [e.as_json() for e in result.events],
        "bus": result.bus.as_json() if result.bus is not None else None,
    }


def write_json(result: SimResult, path: Path) -> None:
    """Write the result document to `path`."""
    path.write_text(json.dumps(to_json(result), indent=2) + "\n", encoding="utf-8")


class ProgressPrinter:
    """A one-line progress display on a TTY; on a pipe, a line only when something changed (<= 1/30 sim s)."""

    def __init__(self, stream: IO[str] | None = None, min_gap_s: float = 30.0) -> None:
        self._out = stream or sys.stderr
        self._tty = self._out.isatty()
        self._last: tuple[object, ...] | None = None
        self._last_t = -1e9
        self._last_wall = 0.0
        self._min_gap = min_gap_s

    def __call__(self, p: Progress) -> None:
        """Show one snapshot (rate-limited)."""
        gates = " ".join(f"{g}:{'healthy' if ok else 'down'}" for g, ok in p.gates.items())
        line = f"[sim {p.t:6.0f}s] nodes {p.nodes_up}/{p.nodes} up, running {p.running}/{p.wanted}, "
        line += f"held {p.held}, failed {p.failed}, {gates}"
        key = (p.nodes_up, p.running, p.held, p.failed, tuple(p.gates.values()))
        if self._tty:
            now = time.monotonic()
            if now - self._last_wall >= 0.1 or key != self._last:
                self._out.write("\r" + line[: WIDTH - 1].ljust(WIDTH - 1))
                self._out.flush()
                self._last_wall = now
        elif key != self._last and p.t - self._last_t >= self._min_gap:
            self._out.write(line + "\n")
            self._last_t = p.t
        self._last = key

    def done(self) -> None:
        """End the progress line."""
        if self._tty:
            self._out.write("\n")
            self._out.flush()
