"""The HA stack, simplified where it does not matter and faithful where it does (proxmox/pve-ha-manager).

- LRM (src/PVE/HA/LRM.pm): a loop of about 10 s (`$max_time = 10`) per node; `run_workers` keeps
  at most `max_workers` (datacenter.cfg, default 4: src/PVE/HA/Env/PVE2.pm `get_max_workers`)
  workers, each holding its slot until its start task ends (`upid_wait` polls every 5 s, no
  timeout); queued commands are ordered by the fair sorter (`start_tries` descending, then the sid
  as a string). `exec_resource_agent('started')` returns SUCCESS if the guest already runs, else
  starts it (rpcenv type `ha`, so the real start and its hook run) and checks it runs.
  `handle_service_exitcode`: on ERROR with `tries < max_restart` it logs "restart policy: retry
  number N for service '<sid>'" and retries next round; otherwise it reports ERROR to the CRM.
- CRM (src/PVE/HA/Manager.pm `next_state_started`): an ERROR is recorded in `failed_nodes`; while
  their count is <= `max_relocate` the service moves to the next node (VMs `migrate`, CTs
  `relocate`), else "recovery policy for service <sid> failed, entering error state". In `error`
  only `disabled` is accepted (src/PVE/API2/HA/Resources.pm `check_service_state`: "service '<sid>'
  in error state, must be disabled and fixed first"); `disabled` clears `failed_nodes` and moves it to
  `stopped` (`next_state_error`), then `started` starts it again.
- Services on a node that stays down are fenced and recovered to an online node after
  `fence_after_s` (the real timing depends on the watchdog and the 120 s lock expiry).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from startgate.sim.acl import ApiError
from startgate.sim.model import Guest, HAResource
from startgate.sim.nodes import ROOT

if TYPE_CHECKING:
    from startgate.sim.cluster import SimCluster

log = logging.getLogger(__name__)

SUCCESS, ERROR = 0, 1
DEFAULT_MAX_WORKERS = 4
UPID_WAIT_S = 5.0  # PVE::HA::Tools::upid_wait polls every 5 s


@dataclass
class _Work:
    """A queued or running LRM command for one service."""

    sid: str
    cmd: str  # started, migrate, stop
    thread: threading.Thread | None = None
    result: int | None = None


def verbose_state(ha: HAResource) -> str:
    """src/PVE/HA/Tools.pm `get_verbose_service_state`."""
    req, cur = ha.state, ha.crm_state
    if req == "ignored":
        return "ignored"
    if cur == "stopped":
        return {"started": "starting", "disabled": "disabled"}.get(req, cur)
    if cur == "started":
        state = "stopping" if req in {"stopped", "disabled"} else cur
        return "starting" if not ha.running else state
    if cur == "error" and req == "disabled":
        return "clearing error flag"
    return cur


class HAManager:
    """CRM and per-node LRMs sharing the cluster's state."""

    def __init__(self, cluster: SimCluster, loop_s: float, fence_after_s: float, max_workers: int) -> None:
        self._c = cluster
        self.loop_s = loop_s
        self.fence_after_s = fence_after_s
        self.max_workers = max_workers
        self._lrms: dict[str, threading.Thread] = {}
        self._work: dict[str, dict[str, _Work]] = {}
        self._error_logged: set[str] = set()
        self._crm_since: float | None = None

    def start(self) -> None:
        """Start the CRM loop (it acts only while some node is up with quorum)."""
        threading.Thread(target=self._crm_loop, daemon=True, name="ha-crm").start()

    def node_up(self, node: str) -> None:
        """Start `node`'s LRM loop if it is not running."""
        t = self._lrms.get(node)
        if t is None or not t.is_alive():
            self._work.setdefault(node, {})
            t = threading.Thread(target=self._lrm_loop, args=(node,), daemon=True, name=f"ha-lrm-{node}")
            self._lrms[node] = t
            t.start()

    def guests(self) -> list[Guest]:
        """The guests that have an HA resource."""
        with self._c.lock:
            return [g for g in self._c.guests.values() if g.ha is not None]

    def _by_sid(self, sid: str) -> Guest:
        for g in self.guests():
            if g.sid == sid:
                return g
        raise ApiError(500, f"no such resource '{sid}'")

    def resolve_sid(self, sid: str) -> str:
        """Accept `vm:100`, `ct:105` or a bare `100` (pve-ha-manager `parse_sid`)."""
        if sid.isdecimal():
            with self._c.lock:
                g = self._c.guests.get(int(sid))
            if g is None:
                raise ApiError(500, f"unable to find VM '{sid}'")
            return g.sid
        return sid

    def set_state(self, sid: str, state: str) -> None:
        """Change the requested state, with the `error` -> `disabled` -> `started` rule."""
        g = self._by_sid(self.resolve_sid(sid))
        c = self._c
        with c.lock:
            ha = g.ha_resource()
            if ha.managed and ha.crm_state == "error" and state != "disabled":
                raise ApiError(500, f"service '{g.sid}' in error state, must be disabled and fixed first")
            if ha.state != state:
                c.events.add(
                    "ha_state", node=g.node, vmid=g.vmid, detail=f"{g.sid} request {ha.state} -> {state}"
                )
            ha.state = state
            c.write_ha_resources()

    def _set_crm(self, g: Guest, new: str) -> None:
        ha = g.ha_resource()
        if ha.crm_state != new:
            self._c.events.add(
                "ha_state", node=g.node, vmid=g.vmid, detail=f"{g.sid} {ha.crm_state} -> {new}"
            )
            ha.crm_state = new
            if new != "started":
                ha.running = False

    def _crm_loop(self) -> None:
        c = self._c
        while not c.clock.stopped:
            if c.quorate():
                if self._crm_since is None:
                    self._crm_since = c.clock.elapsed()
                with c.lock:
                    for g in self.guests():
                        self._crm_service(g)
            if not c.clock.sleep(self.loop_s):
                return

    def _crm_service(self, g: Guest) -> None:
        ha = g.ha_resource()
        c = self._c
        if ha.state == "ignored":
            return
        if ha.crm_state == "error":
            if ha.state == "disabled":
                ha.failed_nodes.clear()
                self._set_crm(g, "stopped")
            return
        if ha.state in {"disabled", "stopped"}:
            self._set_crm(g, "request_stop" if g.running else "stopped")
            return
        if ha.crm_state in {"stopped", "request_stop"}:
            self._set_crm(g, "started")
            return
        result, ha.lrm_result = ha.lrm_result, None
        if ha.crm_state in {"migrate", "relocate"}:
            if result == SUCCESS and ha.target:
                c.move_guest(g, ha.target)
                ha.target = None
                self._set_crm(g, "started")
            return
        if not c.nodes[g.node].up:
            self._maybe_recover(g)
        elif result == SUCCESS:
            ha.failed_nodes.clear()
            ha.running = True
        elif result == ERROR:
            self._start_failed(g, ha)

    def _maybe_recover(self, g: Guest) -> None:
        since = self._crm_since or 0.0
        if self._c.clock.elapsed() - since < self.fence_after_s:
            return
        target = self._pick_node(g, exclude=set())
        if target:
            self._set_crm(g, "fence")
            self._set_crm(g, "recovery")
            self._c.move_guest(g, target)
            self._set_crm(g, "started")

    def _start_failed(self, g: Guest, ha: HAResource) -> None:
        ha.failed_nodes.append(g.node)
        if len(ha.failed_nodes) <= ha.max_relocate:
            target = self._pick_node(g, exclude=set(ha.failed_nodes))
            if target and target != g.node:
                ha.target = target
                self._set_crm(g, "migrate" if g.kind == "qemu" else "relocate")
            return
        self._c.events.add(
            "ha_state",
            node=g.node,
            vmid=g.vmid,
            detail=f"recovery policy for service {g.sid} failed, entering error state. "
            f"Failed nodes: {', '.join(ha.failed_nodes)}",
        )
        self._set_crm(g, "error")

    def _pick_node(self, g: Guest, exclude: set[str]) -> str | None:
        """`select_service_node` 'try-next', simplified: the next online node by name, fewest services."""
        c = self._c
        online = sorted(n for n, node in c.nodes.items() if node.up and n not in exclude)
        if not online:
            return None
        load = {n: sum(1 for x in self.guests() if x.node == n) for n in online}
        later = [n for n in online if n > g.node] + [n for n in online if n <= g.node]
        return min(later, key=lambda n: (load[n], later.index(n)))

    def _lrm_loop(self, node: str) -> None:
        c = self._c
        next_round = c.clock.elapsed()
        while not c.clock.stopped:
            if not c.nodes[node].up:
                return
            if c.quorate():
                if c.clock.elapsed() >= next_round:
                    self._manage(node)
                    next_round = c.clock.elapsed() + self.loop_s
                self._run_workers(node)
            if not c.clock.sleep(1.0):
                return

    def _manage(self, node: str) -> None:
        c = self._c
        work = self._work[node]
        with c.lock:
            for g in self.guests():
                ha = g.ha
                if ha is None or g.node != node or ha.state == "ignored" or g.sid in work:
                    continue
                if ha.crm_state == "started" and not g.running and ha.lrm_result is None:
                    work[g.sid] = _Work(g.sid, "started")
                elif ha.crm_state in {"migrate", "relocate"} and ha.lrm_result is None:
                    work[g.sid] = _Work(g.sid, "migrate")
                elif ha.crm_state == "request_stop":
                    work[g.sid] = _Work(g.sid, "stop")
                elif ha.crm_state == "error" and g.sid not in self._error_logged:
                    self._error_logged.add(g.sid)
                    c.events.add(
                        "note",
                        node=node,
                        vmid=g.vmid,
                        detail=f"service {g.sid} is in an error state and needs manual intervention. "
                        "Look up 'ERROR RECOVERY' in the documentation.",
                    )
                if ha.crm_state != "error":
                    self._error_logged.discard(g.sid)

    def _run_workers(self, node: str) -> None:
        work = self._work[node]
        for sid, w in list(work.items()):
            if w.thread is not None and not w.thread.is_alive():
                del work[sid]
                self._finished(w)
        running = sum(1 for w in work.values() if w.thread is not None)
        queued = [w for w in work.values() if w.thread is None]
        with self._c.lock:
            tries = {g.sid: g.ha.start_tries for g in self.guests() if g.ha is not None}
        for w in sorted(queued, key=lambda w: (-tries.get(w.sid, 0), w.sid)):
            g = self._by_sid(w.sid)
            if g.ha is not None:
                g.ha.start_tries += 1
            if running >= self.max_workers:
                continue
            w.thread = threading.Thread(
                target=self._exec, args=(w, g, node), daemon=True, name=f"lrm-{w.sid}"
            )
            w.thread.start()
            running += 1

    def _exec(self, w: _Work, g: Guest, node: str) -> None:
        c = self._c
        if w.cmd == "migrate":
            c.clock.sleep(1.0)
            w.result = SUCCESS
            return
        if w.cmd == "stop":
            task = c.ops.stop(g.vmid, node, ROOT, "ha")
            task.done.wait()
            w.result = SUCCESS
            return
        if g.running:
            w.result = SUCCESS
            return
        try:
            task = c.ops.start(g.vmid, node, ROOT, "ha")
        except ApiError:
            w.result = ERROR
            return
        while task.running and not c.clock.stopped:
            task.done.wait(c.clock.real(UPID_WAIT_S))
        w.result = SUCCESS if g.running else ERROR

    def _finished(self, w: _Work) -> None:
        c = self._c
        g = self._by_sid(w.sid)
        with c.lock:
            ha = g.ha
            if ha is None:
                return
            ha.start_tries = 0
            if w.cmd == "stop":
                ha.crm_state = "stopped"
                return
            if w.cmd == "migrate" or w.result == SUCCESS:
                ha.tries = 0
                ha.lrm_result = w.result
                return
            if ha.tries >= ha.max_restart:
                c.events.add(
                    "note",
                    node=g.node,
                    vmid=g.vmid,
                    detail=f"unable to start service {g.sid} on local node after {ha.tries} retries",
                )
                ha.tries = 0
                ha.lrm_result = ERROR
                return
            ha.tries += 1
            c.events.add(
                "note",
                node=g.node,
                vmid=g.vmid,
                detail=f"restart policy: retry number {ha.tries} for service '{g.sid}'",
            )
