"""Running a guest's hookscript the way Proxmox does.

proxmox/pve-guest-common src/PVE/GuestHelpers.pm `check_hookscript` resolves the volume id to a path
and dies with "'<volid>' is not in the snippets directory", "script '<volid>' does not exist" or
"script '<volid>' is not executable"; `exec_hookscript` runs `[<path>, <vmid>, <phase>]` through
`run_command` (no shell, no timeout, stdin closed, stdout and stderr into the task log) and turns a
failure into "hookscript error for <vmid> on <phase>: <err>", fatal only for `pre-start`.
`run_command` reports a non-zero exit as "command '<cmd>' failed: exit code <N>" (pve-common
src/PVE/Cmd.pm). The environment gains LC_ALL=C and LVM_SUPPRESS_FD_WARNINGS=1 there.

`SubprocessHookRunner` runs the real file. `InProcessHookRunner` checks the file the same way but
calls a Python function instead of exec'ing it, so property tests can run many starts quickly.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from startgate.sim.model import Storage
from startgate.sim.pvefiles import storage_dir

_VOLID = re.compile(r"^([a-z][a-z0-9_.-]*):(.+)$", re.IGNORECASE)


class HookCheckError(Exception):
    """The hookscript volume does not resolve to an executable snippet (message as check_hookscript)."""


@dataclass(frozen=True)
class HookResult:
    """What a hookscript run gave: its exit code and its output lines."""

    exit_code: int
    output: tuple[str, ...]


def check_hookscript(volid: str, storages: Mapping[str, Storage], root: Path, node: str) -> Path:
    """Resolve `volid` on `node` and check it like GuestHelpers `check_hookscript`; return the path."""
    m = _VOLID.match(volid)
    if not m or m.group(1) not in storages:
        # pve-storage `parse_volume_id` / `storage_config` errors.
        raise HookCheckError(f"storage '{m.group(1) if m else volid}' does not exist")
    storage = storages[m.group(1)]
    volname = m.group(2)
    base = storage_dir(root, node, storage)
    if not volname.startswith("snippets/") or base is None:
        raise HookCheckError(f"'{volid}' is not in the snippets directory")
    path = base / volname
    if not path.is_file():
        raise HookCheckError(f"script '{volid}' does not exist")
    if not os.access(path, os.X_OK):
        raise HookCheckError(f"script '{volid}' is not executable")
    return path


class HookRunner(Protocol):
    """Runs one hookscript phase and returns its result (blocking, like run_command)."""

    def __call__(self, script: Path, vmid: int, phase: str, env: Mapping[str, str], /) -> HookResult:
        """Run `<script> <vmid> <phase>` with `env` added to the environment."""
        ...

    def kill_all(self) -> None:
        """Stop every run still in progress (the cluster is closing)."""
        ...


class SubprocessHookRunner:
    """Runs the hookscript as a real child process: argv `[path, vmid, phase]`, stdin closed."""

    def __init__(self) -> None:
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._closed = False

    def __call__(self, script: Path, vmid: int, phase: str, env: Mapping[str, str]) -> HookResult:
        """Run the script and wait for it with no timeout, as Proxmox does."""
        full = dict(os.environ) | {"LC_ALL": "C", "LVM_SUPPRESS_FD_WARNINGS": "1"} | dict(env)
        with self._lock:
            if self._closed:
                return HookResult(-9, ("killed: simulated cluster closed",))
            proc = subprocess.Popen(  # noqa: S603 - the hookscript path is the point of this call
                [str(script), str(vmid), phase],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=full,
                close_fds=True,
            )
            self._procs.add(proc)
        try:
            out, _ = proc.communicate()
        finally:
            with self._lock:
                self._procs.discard(proc)
        text = out.decode("utf-8", "replace")
        return HookResult(proc.returncode, tuple(line for line in text.splitlines() if line))

    def kill_all(self) -> None:
        """Kill every hook process still running, and refuse new ones."""
        with self._lock:
            self._closed = True
            procs = list(self._procs)
        for p in procs:
            p.kill()


HookFunction = Callable[[int, str, Mapping[str, str]], HookResult]


class InProcessHookRunner:
    """Calls `fn(vmid, phase, env)` in the task's thread instead of exec'ing the (checked) script."""

    def __init__(self, fn: HookFunction) -> None:
        self._fn = fn

    def __call__(self, _script: Path, vmid: int, phase: str, env: Mapping[str, str]) -> HookResult:
        """Call the function; the script path was already checked like the real one."""
        return self._fn(vmid, phase, env)

    def kill_all(self) -> None:
        """In-process hooks end when the clock stops; nothing to kill."""


def command_failed(script: Path, vmid: int, phase: str, code: int) -> str:
    """run_command's error text for a non-zero exit (pve-common src/PVE/Cmd.pm)."""
    if code < 0:
        return f"command '{script} {vmid} {phase}' failed: got signal {-code}"
    return f"command '{script} {vmid} {phase}' failed: exit code {code}"
