"""The hookscript's entry: `main(argv) -> exit code`, called by the snippet Proxmox runs.

Proxmox runs `<snippet> <vmid> <phase>` as root with stdin closed, output into the task log and
no timeout, while holding the guest's config lock (proxmox/pve-guest-common: GuestHelpers.pm
`exec_hookscript`). Only a non-zero exit of `pre-start` aborts anything (the start).

Exit codes:
- 0: allow (pre-start), and always for the other phases.
- 1: hold (pre-start only): a gate is not healthy; the start is recorded and re-issued later.
- 0 also for every kind of bad input or internal trouble (unknown phase, bad VMID, missing or
  invalid startgate config, unreadable guest config, a bug): a gate cannot be stricter than its
  own health, so the hook never blocks a start for a reason of its own. It says so on one line.
- 2: called with fewer than two arguments (never by Proxmox): a usage line.

A hard stop backs the deadline: an interval timer fires just before `hook.max_seconds` and ends
the process with exit 0 and a line saying so, whatever is stuck (a hung pmxcfs read, a disk).

This module, with startgate/cli.py, is the only place that ends the process (`os._exit` in the
timer's handler). It imports only what every run needs; pydantic never (see settings.py).
"""

from __future__ import annotations

import os
import signal
import sys
import time

from startgate.deadline import Deadline
from startgate.errors import ConfigError
from startgate.hooks import settings as hook_settings
from startgate.hooks.run import MARGIN_S, HookRun

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: hot path (see startgate._lite)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import FrameType

EXIT_ALLOW = 0
EXIT_USAGE = 2
# startgate.names' VMID range (pve-common `pve-vmid`); names.py imports re, which the light path avoids.
VMID_MIN, VMID_MAX = 100, 999_999_999
_PHASES = ("pre-start", "post-start", "pre-stop", "post-stop")
_DEFAULT_MAX_SECONDS = 3.0
_HARD_STOP_MARGIN_S = 0.15  # the timer fires this long before max_seconds (process exit follows)


def parse_vmid(text: str) -> int:
    """The VMID Proxmox passed, as startgate.names.check_vmid reads it (ValueError saying why)."""
    if not text.isascii() or not text.isdecimal() or len(text) > 9:
        raise ValueError(f"VMID {text[:40]!r} is not a number in {VMID_MIN}..{VMID_MAX}")
    vmid = int(text)
    if not VMID_MIN <= vmid <= VMID_MAX:
        raise ValueError(f"VMID {vmid} is out of range {VMID_MIN}..{VMID_MAX}")
    return vmid


def _print(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _arm_hard_stop(started: float, limit: float, label: str, phase: str, say: Callable[[str], None]) -> None:
    """End the process (exit 0, one line) shortly before `limit` seconds after `started`."""

    def fire(_signum: int, _frame: FrameType | None) -> None:
        what = f"allowing start of {label}" if phase == "pre-start" else f"{phase} of {label} not reported"
        say(f"startgate: ERROR: {what}: the hook ran out of time ({limit:g} s)")
        os._exit(EXIT_ALLOW)

    signal.signal(signal.SIGALRM, fire)
    left = limit - _HARD_STOP_MARGIN_S - (time.monotonic() - started)
    signal.setitimer(signal.ITIMER_REAL, max(0.05, left))


def main(
    argv: list[str] | None = None,
    env: Mapping[str, str] | None = None,
    say: Callable[[str], None] = _print,
    hard_stop: bool = True,
) -> int:
    """Run the hook for `argv` = [vmid, phase]; the exit code (see the module docstring)."""
    started = time.monotonic()
    args = sys.argv[1:] if argv is None else argv
    environ: Mapping[str, str] = os.environ if env is None else env
    if len(args) < 2:
        say("usage: startgate-hook <vmid> <phase>  (Proxmox runs it with phase pre-start, post-start, ...)")
        return EXIT_USAGE
    vmid_text, phase = args[0], args[1]
    try:
        vmid = parse_vmid(vmid_text)
    except ValueError as exc:
        say(f"startgate: ignoring hook call for phase {phase[:40]!r}: {exc}; nothing checked")
        return EXIT_ALLOW
    label = f"guest {vmid}"
    if phase not in _PHASES:
        say(f"startgate: unknown hook phase {phase[:40]!r} for {label}; nothing to do")
        return EXIT_ALLOW
    if hard_stop:
        _arm_hard_stop(started, _DEFAULT_MAX_SECONDS, label, phase, say)
    try:
        return _run(vmid, phase, environ, started=started, say=say, hard_stop=hard_stop)
    except Exception as exc:  # noqa: BLE001 - the hook must never block a start for a bug of its own
        if phase == "pre-start":
            what = f"allowing start of {label} without checking its gates"
        else:
            what = f"{phase} of {label} not reported"
        say(f"startgate: ERROR: {what}: internal error: {exc!r}")
        return EXIT_ALLOW
    finally:
        if hard_stop:
            signal.setitimer(signal.ITIMER_REAL, 0)


def _run(
    vmid: int,
    phase: str,
    env: Mapping[str, str],
    *,
    started: float,
    say: Callable[[str], None],
    hard_stop: bool,
) -> int:
    try:
        settings = hook_settings.load(env)
    except ConfigError as exc:
        problem = f"{exc.path}: {'; '.join(exc.problems)}"
        if phase == "pre-start":
            say(f"startgate: ERROR: allowing start of guest {vmid} without checking its gates: {problem}")
        else:
            say(f"startgate: ERROR: {phase} of guest {vmid} not reported: {problem}")
        return EXIT_ALLOW
    if hard_stop:  # re-arm with the configured bound
        _arm_hard_stop(started, settings.max_seconds, f"guest {vmid}", phase, say)
    budget = settings.max_seconds - MARGIN_S - (time.monotonic() - started)
    outcome = HookRun(settings, vmid, phase, env, Deadline(max(0.05, budget)), say=say).run()
    if outcome.line:
        say(outcome.line)
    return outcome.code
