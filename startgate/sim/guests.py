"""Guest starts and stops as qemu-server and pve-container run them.

API level (proxmox/qemu-server src/PVE/API2/Qemu.pm `vm_start`; proxmox/pve-container
src/PVE/API2/LXC/Status.pm `vm_start`): containers die "CT <id> already running" before anything
else; both need quorum (`check_cfs_quorum`: "cluster not ready - no quorum?"); an HA-managed guest
started by anyone but the HA stack gets an `hastart` task that only runs
`ha-manager set <sid> --state started`; otherwise a `qmstart` / `vzstart` worker runs.

Worker (qemu-server src/PVE/QemuServer.pm `vm_start` + `vm_start_nolock`): take the config flock
(10 s, then "can't lock file '<path>' - got timeout"), `check_lock`, "VM <id> already running", the
`pre-start` hook, THEN `activate_volumes`, launch, `post-start` hook. Containers (pve-container
src/PVE/LXC.pm `vm_start`): flock, `check_lock`, `activate_volumes` THEN `pre-start`, then
`systemctl start pve-container@<id>`, `post-start`. Stops run `pre-stop` in the lock and `post-stop`
after (qemu-server `_do_vm_stop`, `vm_stop_cleanup`; LXC `vm_stop`, lxc-pve-poststop-hook).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from startgate.sim.acl import ApiError
from startgate.sim.events import Stage
from startgate.sim.hooks import HookCheckError, check_hookscript, command_failed
from startgate.sim.model import Guest
from startgate.sim.tasks import Task, TaskError

if TYPE_CHECKING:
    from startgate.sim.cluster import SimCluster

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 10.0  # pve-guest-common AbstractConfig `lock_config` -> lock_config_full($vmid, 10, ...)
LAUNCH_S = 1.0  # simulated time QEMU / lxc-start take once volumes are active


class StartFailedError(TaskError):
    """A start worker's error, with the stage it failed in and (for pre-start) what the hook printed."""

    def __init__(self, message: str, stage: Stage, hook_output: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.stage: Stage = stage
        self.hook_output = hook_output


class GuestOps:
    """Start and stop guests on behalf of the API, startall and the HA LRM."""

    def __init__(self, cluster: SimCluster) -> None:
        self._c = cluster

    def start(self, vmid: int, node: str, user: str, source: str) -> Task:
        """The start API call (`source` "ha" is the LRM's own start); ApiError when it refuses at once."""
        c = self._c
        with c.lock:
            guest = c.guest_on(vmid, node)
            if guest.kind == "lxc" and guest.running:
                self._refused(guest, source, f"CT {vmid} already running")
            if not c.quorate():
                self._refused(guest, source, "cluster not ready - no quorum?")
            ha = guest.ha_managed and source != "ha"
            c.events.add(
                "start_requested", node=node, vmid=vmid, source=source, detail="hastart" if ha else ""
            )
            uptime = c.node_uptime(node) or 0.0
        if ha:
            return c.tasks.start(
                node, "hastart", str(vmid), user, worker=lambda t: self._hastart(t, guest), uptime_s=uptime
            )
        typ = "qmstart" if guest.kind == "qemu" else "vzstart"
        return c.tasks.start(
            node,
            typ,
            str(vmid),
            user,
            worker=lambda t: self._start_worker(t, guest, node, source),
            uptime_s=uptime,
        )

    def _refused(self, guest: Guest, source: str, msg: str) -> None:
        self._c.events.add("start_refused", node=guest.node, vmid=guest.vmid, source=source, detail=msg)
        raise ApiError(500, msg)

    def _hastart(self, task: Task, guest: Guest) -> None:
        label = "VM" if guest.kind == "qemu" else "CT"
        task.log(f"Requesting HA start for {label} {guest.vmid}")
        try:
            self._c.ha.set_state(guest.sid, "started")
        except ApiError as exc:
            # `ha-manager set` prints the API error and exits 255; run_command reports the exit code.
            task.log(exc.message)
            raise TaskError(
                f"command 'ha-manager set {guest.sid} --state started' failed: exit code 255"
            ) from None

    def _lock(self, guest: Guest) -> None:
        if not guest.conf_lock.acquire(timeout=self._c.clock.real(LOCK_TIMEOUT_S)):
            raise TaskError(f"can't lock file '{guest.lock_path()}' - got timeout")

    def _start_worker(self, task: Task, guest: Guest, node: str, source: str) -> None:
        try:
            self._lock(guest)
        except TaskError as exc:
            self._failed(guest, node, source, task, StartFailedError(str(exc), "lock"))
            raise
        try:
            self._locked_start(task, guest, node, source)
        except StartFailedError as exc:
            self._failed(guest, node, source, task, exc)
            raise
        except TaskError as exc:
            self._failed(guest, node, source, task, StartFailedError(str(exc), ""))
            raise
        finally:
            guest.conf_lock.release()

    def _locked_start(self, task: Task, guest: Guest, node: str, source: str) -> None:
        c = self._c
        with c.lock:
            locked, running, hooked = guest.lock, guest.running, bool(guest.hookscript)
        if locked:
            raise TaskError(f"{'VM' if guest.kind == 'qemu' else 'CT'} is locked ({locked})")
        if running:
            raise TaskError(f"{guest.label} already running")
        began = self._unhealthy(guest)
        if guest.kind == "qemu":
            self.run_hook(task, guest, node, "pre-start")
            decided = self._unhealthy(guest)
            self._activate(task, guest, node, "volumes")
        else:
            self._activate(task, guest, node, "volumes-before-hook" if hooked else "volumes")
            self.run_hook(task, guest, node, "pre-start")
            decided = self._unhealthy(guest)
        # Judged at both ends of the start's decision: a gate that was healthy when the start began
        # (its volumes came from a healthy controller, or the hook was right to let it through) and
        # failed while the hook ran is a flap during a start, not a start before the gate was healthy.
        decided = tuple(g for g in decided if g in began)
        if not c.clock.sleep(LAUNCH_S):
            raise StartFailedError("interrupted: simulated cluster closed", "launch")
        self._mark_running(guest, node, source, task, decided)
        self.run_hook(task, guest, node, "post-start")

    def _activate(self, task: Task, guest: Guest, node: str, stage: Stage) -> None:
        try:
            self._c.storage.activate_volumes(node, guest, task)
        except TaskError as exc:
            raise StartFailedError(str(exc), stage) from None

    def _failed(self, guest: Guest, node: str, source: str, task: Task, exc: StartFailedError) -> None:
        held = exc.stage == "hook" and str(exc).startswith(f"hookscript error for {guest.vmid} on pre-start:")
        # A held start's event carries what the hook printed (its task-log line), else the task error.
        detail = " ".join(exc.hook_output) if held and exc.hook_output else str(exc)
        self._c.events.add(
            "held" if held else "start_failed",
            node=node,
            vmid=guest.vmid,
            source=source,
            detail=detail,
            upid=task.text,
            stage=exc.stage,
        )

    def _unhealthy(self, guest: Guest) -> tuple[str, ...]:
        """The member gates unhealthy right now (when the start begins, and when it went past pre-start).

        Those two moments bound the start's decision; the `gated` property is judged on them. A gate
        that fails during the launch that follows does not make it a start before the gate was
        healthy (on a real node the volumes are active by then and the guest runs on).
        """
        with self._c.lock:
            return self._c.unhealthy_gates(guest)

    def _mark_running(
        self, guest: Guest, node: str, source: str, task: Task, unhealthy: tuple[str, ...]
    ) -> None:
        c = self._c
        with c.lock:
            if not c.nodes[node].up:
                raise TaskError(f"node '{node}' lost power")
            guest.running = True
            guest.running_since = c.clock.elapsed()
            c.events.add(
                "guest_running",
                node=node,
                vmid=guest.vmid,
                source=source,
                upid=task.text,
                unhealthy_gates=unhealthy,
            )

    def run_hook(self, task: Task, guest: Guest, node: str, phase: str) -> None:
        """GuestHelpers `exec_hookscript`: fatal only for pre-start; output into the task log."""
        c = self._c
        with c.lock:
            volid = guest.hookscript
        if not volid:
            return
        err, output = self._exec_hook(task, guest, node, phase, volid)
        if err is not None:
            msg = f"hookscript error for {guest.vmid} on {phase}: {err}"
            if phase == "pre-start":
                raise StartFailedError(msg, "hook", output)
            task.log(msg)

    def _exec_hook(
        self, task: Task, guest: Guest, node: str, phase: str, volid: str
    ) -> tuple[str | None, tuple[str, ...]]:
        c = self._c
        try:
            script = check_hookscript(volid, c.storages, c.root, node)
        except HookCheckError as exc:
            return str(exc), ()
        env = {"PVE_MIGRATED_FROM": ""} if guest.kind == "qemu" else {}
        env |= c.hook_env | c.node_env.get(node, {})
        env |= {"STARTGATE_SIM_NODE": node, "STARTGATE_SIM_CONFIG_DIR": str(c.config_dir)}
        task.step = f"hook {phase}"
        began = time.monotonic()  # real time: the hook is a real process (the report shows how long)
        result = c.hook_runner(script, guest.vmid, phase, env)
        real_ms = round((time.monotonic() - began) * 1000)
        task.step = ""
        for line in result.output:
            task.log(line)
        c.events.add(
            "hook", node=node, vmid=guest.vmid, detail=f"{phase} exit {result.exit_code}", real_ms=real_ms
        )
        if result.exit_code != 0:
            return command_failed(script, guest.vmid, phase, result.exit_code), result.output
        return None, result.output

    def stop(self, vmid: int, node: str, user: str, source: str) -> Task:
        """The stop API call: a `qmstop` / `vzstop` task (pre-stop in the lock, post-stop after)."""
        c = self._c
        with c.lock:
            guest = c.guest_on(vmid, node)
            uptime = c.node_uptime(node) or 0.0
        typ = "qmstop" if guest.kind == "qemu" else "vzstop"
        return c.tasks.start(
            node,
            typ,
            str(vmid),
            user,
            worker=lambda t: self._stop_worker(t, guest, node, source),
            uptime_s=uptime,
        )

    def _stop_worker(self, task: Task, guest: Guest, node: str, source: str) -> None:
        self._lock(guest)
        try:
            if not guest.running:
                return
            self.run_hook(task, guest, node, "pre-stop")
            self.mark_stopped(guest, source)
        finally:
            guest.conf_lock.release()
        self.run_hook(task, guest, node, "post-stop")

    def mark_stopped(self, guest: Guest, source: str, detail: str = "") -> None:
        """The guest no longer runs (stopped, or its node lost power)."""
        c = self._c
        with c.lock:
            if guest.running:
                guest.running = False
                guest.running_since = None
                c.events.add("guest_stopped", node=guest.node, vmid=guest.vmid, source=source, detail=detail)
