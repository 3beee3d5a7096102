"""A NAIVE hookscript: in `pre-start`, block until the LINSTOR controller answers `/health` with 200.

This is what an admin would write first, and what the old LINSTOR user guide warned against
("this would horribly fail in a serialized, non-concurrent VM start/plugin call event stream ...
That would obviously result in a deadlock"). startgate refuses fast instead. The sim keeps this
hook to show the deadlock: it reads the guest's config and storage.cfg like a real hook, and for a
guest with a volume on a `drbd` storage it polls that storage's controllers every simulated second.

Run as a script (`python -m startgate.sim.naive_hook <vmid> <phase>`, with STARTGATE_SIM_CONFIG_DIR,
STARTGATE_SIM_NODE and STARTGATE_SIM_SCALE set by the sim), or in-process via `NaiveHook`.
"""

from __future__ import annotations

import http.client
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from startgate.sim.clock import SimClock
from startgate.sim.hooks import HookResult, InProcessHookRunner

if TYPE_CHECKING:
    from startgate.sim.cluster import SimCluster

POLL_S = 1.0


def drbd_controllers(config_dir: Path) -> dict[str, list[str]]:
    """storage.cfg's drbd storages and their `controller` lists."""
    out: dict[str, list[str]] = {}
    current: str | None = None
    text = (config_dir / "storage.cfg").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line and not line[0].isspace():
            typ, _, sid = line.partition(":")
            current = sid.strip() if typ.strip() == "drbd" else None
            if current:
                out[current] = []
        elif current and line.strip().startswith("controller "):
            out[current] = [c.strip() for c in line.split(None, 1)[1].split(",") if c.strip()]
    return out


def guest_controllers(config_dir: Path, node: str, vmid: int) -> list[str]:
    """The controllers a guest's volumes depend on (empty: not on LINSTOR)."""
    storages = drbd_controllers(config_dir)
    for sub in ("qemu-server", "lxc"):
        conf = config_dir / "nodes" / node / sub / f"{vmid}.conf"
        if conf.is_file():
            break
    else:
        return []
    wanted: list[str] = []
    for line in conf.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(": ")
        storage = value.partition(":")[0]
        if key != "hookscript" and storage in storages:
            wanted += [c for c in storages[storage] if c not in wanted]
    return wanted


def controller_answers(controllers: list[str]) -> bool:
    """True when any controller's `/health` answers 200."""
    for c in controllers:
        host, _, port = c.partition(":")
        conn = http.client.HTTPConnection(host, int(port or 3370), timeout=2.0)
        try:
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return True
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
    return False


def wait_forever(controllers: list[str], sleep: Callable[[float], bool]) -> bool:
    """Poll until a controller answers; False only if `sleep` says to stop."""
    while not controller_answers(controllers):
        if not sleep(POLL_S):
            return False
    return True


Probe = Callable[[list[str]], bool]


class NaiveHook:
    """The naive hook as an in-process function for `InProcessHookRunner` (fast property tests).

    `probe` answers "does any of these controllers answer /health 200?" (default: real HTTP);
    `poll_s` is the simulated time between probes.
    """

    def __init__(
        self, clock: SimClock, config_dir: Path, probe: Probe = controller_answers, poll_s: float = POLL_S
    ) -> None:
        self._clock = clock
        self._config_dir = config_dir
        self._probe = probe
        self._poll_s = poll_s

    def __call__(self, vmid: int, phase: str, env: Mapping[str, str]) -> HookResult:
        """Block in pre-start until the guest's controller answers; other phases pass."""
        if phase != "pre-start":
            return HookResult(0, ())
        ctrls = guest_controllers(self._config_dir, env["STARTGATE_SIM_NODE"], vmid)
        if not ctrls:
            return HookResult(0, ())
        while not self._probe(ctrls):
            if not self._clock.sleep(self._poll_s):
                return HookResult(1, ("naive hook: interrupted",))
        return HookResult(0, (f"naive hook: controller answered, starting {vmid}",))


SNIPPET = "naive-hook"


def attach(sim: SimCluster, *, in_process: bool = True, poll_s: float = POLL_S) -> None:
    """Install the naive hook on every node and set it on every gate member (call before boot_all).

    In-process, it probes the sim's controllers directly instead of over HTTP (same answer, far
    fewer threads waking up), so property tests can play many clusters quickly.
    """
    text = f"#!/bin/sh\nexec '{sys.executable}' -m startgate.sim.naive_hook \"$@\"\n"
    volid = ""
    for node in sim.nodes:
        volid = sim.install_snippet(node, SNIPPET, text)
    for g in list(sim.guests.values()):
        if sim.member_gates(g):
            sim.set_hookscript(g.vmid, volid)
    if in_process:

        def probe(addresses: list[str]) -> bool:
            return any(
                (c := sim.controller_at(a.partition(":")[0])) is not None and c.healthy_now()
                for a in addresses
            )

        sim.hook_runner = InProcessHookRunner(NaiveHook(sim.clock, sim.config_dir, probe, poll_s))


def main(argv: list[str]) -> int:
    """Script entry: `<vmid> <phase>`."""
    if len(argv) != 2 or not argv[0].isdecimal():
        sys.stderr.write("usage: naive_hook <vmid> <phase>\n")
        return 2
    vmid, phase = int(argv[0]), argv[1]
    if phase != "pre-start":
        return 0
    scale = float(os.environ.get("STARTGATE_SIM_SCALE", "1"))
    ctrls = guest_controllers(
        Path(os.environ["STARTGATE_SIM_CONFIG_DIR"]), os.environ["STARTGATE_SIM_NODE"], vmid
    )
    if ctrls:
        sys.stdout.write(f"naive hook: waiting for LINSTOR controller {','.join(ctrls)}\n")
        sys.stdout.flush()

        def sleep(s: float) -> bool:
            time.sleep(s * scale)
            return True

        wait_forever(ctrls, sleep)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
