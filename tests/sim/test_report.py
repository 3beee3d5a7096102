"""Printing a run: the progress line on a TTY, and timeline entries wrapped to 100 columns."""

from __future__ import annotations

import io

from startgate.sim.events import SimEvent
from startgate.sim.invariants import InvariantReport, Outcome
from startgate.sim.report import WIDTH, ProgressPrinter, timeline, verdict
from startgate.sim.runner import MODE_NO_COORDINATOR, Progress, SimResult


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _progress(held: int) -> Progress:
    return Progress(
        t=12.0, nodes_up=4, nodes=4, running=2, wanted=9, gates={"linstor": False, "g" * 60: True},
        held=held, failed=1,
    )  # fmt: skip


def test_progress_on_a_tty_rewrites_one_line_that_fits() -> None:
    """On a TTY each update rewrites one line (carriage return) no wider than WIDTH - 1; done() ends it."""
    out = _Tty()
    printer = ProgressPrinter(out)
    printer(_progress(1))
    printer(_progress(2))
    printer.done()
    text = out.getvalue()
    parts = text.split("\r")[1:]
    assert len(parts) == 2
    assert all(len(p.rstrip("\n")) <= WIDTH - 1 for p in parts)
    assert "held 2" in parts[-1]
    assert text.endswith("\n")


def test_progress_on_a_pipe_prints_only_changes() -> None:
    """On a pipe, a line only when something changed (no carriage returns)."""
    out = io.StringIO()
    printer = ProgressPrinter(out, min_gap_s=0.0)
    printer(_progress(1))
    printer(_progress(1))
    printer(_progress(2))
    printer.done()
    assert "\r" not in out.getvalue()
    assert len(out.getvalue().splitlines()) == 2


def _result(events: list[SimEvent]) -> SimResult:
    outs = [Outcome(101, "VM", "db1", "pve1", None, True, True, ("linstor",), True, False)]
    inv = InvariantReport((), (101,), ())
    return SimResult("s", 0.03, MODE_NO_COORDINATOR, "quiet", 300.0, 9.0, events, outs, inv)


def test_a_held_entry_shows_the_hooks_line_wrapped_under_the_text() -> None:
    """A held start shows the hook's task-log line, wrapped to WIDTH with continuation lines indented."""
    line = 'startgate: holding start of VM 101 until gate "linstor" is healthy (HTTP 500 from 127.0.0.9:3370)'
    ev = SimEvent(90.5, "held", node="pve1", vmid=101, detail=line, stage="hook")
    lines = timeline(_result([ev]))
    assert len(lines) > 1
    assert all(len(x) <= WIDTH for x in lines)
    assert lines[0].startswith("    90.5s  pve1   VM 101   HELD (hook exit 1)")
    assert all(x.startswith(" " * 27) for x in lines[1:])
    assert "holding start of VM 101" in " ".join(x.strip() for x in lines)


def test_container_failure_before_its_hook_is_named() -> None:
    """A CT whose volume activation failed before pre-start says the hook never ran."""
    ev = SimEvent(
        67.9, "start_failed", node="pve3", vmid=105, detail="no controller", stage="volumes-before-hook"
    )
    text = " ".join(x.strip() for x in timeline(_result([ev])))
    assert "in the storage plugin, before pre-start" in text
    assert "the hook never ran" in text
    assert all(len(x) <= WIDTH for x in verdict(_result([ev])))
