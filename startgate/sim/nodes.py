"""Node power-on and pve-guests' boot-time `startall`.

proxmox/pve-manager PVE/API2/Nodes.pm `startall` (read at 14a22df and at 40bbbd26 = 9.0.0):
- waits for quorum forever ("waiting for quorum ..." / "got quorum"), no storage wait;
- `get_start_stop_list`: guests on this node with `onboot`, HA-managed ones skipped, grouped by
  `startup` order (none: LONG_MAX, i.e. last), each order ascending, VMIDs ascending within it;
- `check_cfs_quorum()` before each guest (losing quorum aborts the whole startall);
- "Starting VM <id>" / "Starting CT <id>", then up to 9.1.1 strictly serial: wait for the task
  (no timeout), on success sleep `up` (default 3 s for VMs, 0 for CTs), on failure print
  "Starting VM <id> failed: <exitstatus>" and go on; from 9.1.2 (commit 301897cb) the starts of one
  order level run in parallel with at most `max_workers` tasks, sleeping `up` after each issue
  whatever the outcome, and the level is finished before the next begins.
A node powers on after its `boot_s`; drbd.service then brings up the resources with kept .res
files (LINBIT/drbd-utils scripts/drbd: `drbdadm adjust-with-progress all`), so they exist as local
devices before any controller answers.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING

from startgate.sim.acl import ApiError
from startgate.sim.model import Guest
from startgate.sim.tasks import Task, TaskError

if TYPE_CHECKING:
    from startgate.sim.cluster import SimCluster

log = logging.getLogger(__name__)

ROOT = "root@pam"
LONG_MAX = sys.maxsize
DRBD_UP_S = 5.0  # power-on -> drbd.service has adjusted the kept resources


class NodeBoot:
    """Powers nodes on and off; runs each node's startall once it has quorum."""

    def __init__(self, cluster: SimCluster) -> None:
        self._c = cluster
        self._threads: list[threading.Thread] = []

    def boot(self, name: str, delay_s: float | None = None) -> None:
        """Power `name` on after `delay_s` (default: its boot time); it then runs startall."""
        node = self._c.nodes[name]
        wait = node.boot_s if delay_s is None else delay_s
        t = threading.Thread(target=self._boot, args=(name, wait), daemon=True, name=f"boot-{name}")
        self._threads.append(t)
        t.start()

    def _boot(self, name: str, wait: float) -> None:
        c = self._c
        if not c.clock.sleep(wait):
            return
        with c.lock:
            node = c.nodes[name]
            if node.never_returns or node.up:
                return
            node.up = True
            node.up_since = c.clock.elapsed()
            node.startall_done = False
            c.events.add("node_up", node=name)
        c.power_changed(name, True)
        c.ha.node_up(name)
        if not c.clock.sleep(DRBD_UP_S):
            return
        with c.lock:
            if not node.up:
                return
            for s in c.storages.values():
                node.local_drbd.update(s.keep_res if s.type == "drbd" else ())
        c.tasks.start(
            name,
            "startall",
            "",
            ROOT,
            worker=lambda task: self._startall(task, name),
            uptime_s=c.node_uptime(name) or 0,
        )

    def power_off(self, name: str) -> None:
        """Cut `name`'s power: its guests stop at once, with no hooks (a power loss)."""
        c = self._c
        with c.lock:
            node = c.nodes[name]
            if not node.up:
                return
            node.up = False
            node.up_since = None
            node.local_drbd.clear()
            guests = [g for g in c.guests.values() if g.node == name and g.running]
            c.events.add("node_down", node=name)
        for g in guests:
            c.ops.mark_stopped(g, "sim", "power loss")
        c.power_changed(name, False)

    def start_list(self, name: str) -> list[list[Guest]]:
        """`get_start_stop_list` for boot: onboot, not HA-managed, grouped by order, sorted."""
        c = self._c
        with c.lock:
            chosen = [g for g in c.guests.values() if g.node == name and g.onboot and not g.ha_managed]
        levels: dict[int, list[Guest]] = {}
        for g in chosen:
            order = g.startup.order if g.startup.order is not None else LONG_MAX
            levels.setdefault(order, []).append(g)
        return [sorted(levels[o], key=lambda g: g.vmid) for o in sorted(levels)]

    def _startall(self, task: Task, name: str) -> None:
        c = self._c
        if not c.quorate():
            task.log("waiting for quorum ...")
            while not c.quorate():
                if not c.clock.sleep(1.0):
                    raise TaskError("interrupted: simulated cluster closed")
            task.log("got quorum")
        c.events.add("quorum", node=name)
        c.events.add("startall", node=name, detail="begin", upid=task.text)
        node = c.nodes[name]
        max_workers = c.scenario.max_workers or min(max(1, node.cpus - 1), 8)
        for level in self.start_list(name):
            if c.scenario.parallel_startall:
                self._level_parallel(task, name, level, max_workers)
            else:
                self._level_serial(task, name, level)
        with c.lock:
            node.startall_done = True
        c.events.add("startall", node=name, detail="end", upid=task.text)

    def _level_serial(self, task: Task, name: str, level: list[Guest]) -> None:
        for guest in level:
            if not self._c.quorate():
                raise TaskError("cluster not ready - no quorum?")
            started = self._issue(task, guest, name)
            if started is None:
                continue
            self._wait(started)
            if started.failed:
                task.log(f"Starting {guest.label} failed: {started.exitstatus}")
            else:
                self._delay(task, guest, announce=guest.startup.up is not None)

    def _level_parallel(self, task: Task, name: str, level: list[Guest], max_workers: int) -> None:
        workers: list[tuple[Guest, Task]] = []
        for guest in level:
            if not self._c.quorate():
                raise TaskError("cluster not ready - no quorum?")
            started = self._issue(task, guest, name)
            if started is None:
                continue
            workers.append((guest, started))
            self._delay(task, guest, announce=guest.startup.up is not None)
            while len(workers) >= max_workers:
                workers = self._reap(task, workers)
                if workers and not self._c.clock.sleep(1.0):
                    raise TaskError("interrupted: simulated cluster closed")
        while workers:
            workers = self._reap(task, workers)
            if workers and not self._c.clock.sleep(1.0):
                raise TaskError("interrupted: simulated cluster closed")

    def _issue(self, task: Task, guest: Guest, name: str) -> Task | None:
        if guest.running:
            return None
        task.log(f"Starting {guest.label}")
        try:
            return self._c.ops.start(guest.vmid, name, ROOT, "startall")
        except ApiError as exc:
            task.log(exc.message)  # `warn $@` after the eval
            return None

    def _delay(self, task: Task, guest: Guest, *, announce: bool) -> None:
        default = 3 if guest.kind == "qemu" else 0
        delay = guest.startup.up if guest.startup.up is not None else default
        if delay > 0:
            if announce:
                task.log(f"Waiting for {delay} seconds (startup delay)")
            self._c.clock.sleep(delay)

    def _wait(self, started: Task) -> None:
        while started.running and not self._c.clock.stopped:
            started.done.wait(self._c.clock.real(1.0))

    def _reap(self, task: Task, workers: list[tuple[Guest, Task]]) -> list[tuple[Guest, Task]]:
        left = []
        for guest, t in workers:
            if t.running:
                left.append((guest, t))
            elif t.failed:
                task.log(f"Starting {guest.label} failed: {t.exitstatus}")
        return left
