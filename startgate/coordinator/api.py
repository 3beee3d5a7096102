"""What the coordinator does and reads through the Proxmox API, as the core's events.

Calls (proxmox/pve-manager PVE/API2/{Cluster,Nodes,Tasks}.pm, qemu-server API2/Qemu.pm,
pve-container API2/LXC{,/Status}.pm, pve-ha-manager API2/HA/Resources.pm):
- start: `POST /nodes/{node}/{qemu|lxc}/{vmid}/status/start` -> a UPID (qmstart/vzstart/hastart);
- a task's end: `GET /nodes/{node}/tasks/{upid}/status` (`status` running/stopped, `exitstatus`);
- HA: `PUT /cluster/ha/resources/{vm|ct}:{vmid}` state=disabled|started;
- one guest: `status/current` (status, lock, `ha` {managed, state}), its config (membership, onboot,
  startup order) and its tasks (an active start; the end of its last start or stop);
- reconcile: `/nodes` (online, uptime), `/nodes/{node}/time` (the API's own clock, for boot times),
  `/cluster/resources?type=vm`, per node the task list (startall, failed starts, starts and stops
  since boot, active starts) and the configs of stopped guests (cached; they rarely change).

Times that come from the API (boot times, task ends) stay in the API's clock and are only compared
with each other; the service stamps `observed_at` with its own clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from startgate.coordinator.proxmox import ApiClient, upid_path
from startgate.core import guestconf, membership
from startgate.core.events import Event, GuestMissing, GuestObserved, NodeObserved, TaskObserved
from startgate.core.membership import GateRule
from startgate.core.model import GuestType
from startgate.errors import GuestConfigError, ProxmoxError

log = logging.getLogger(__name__)

START_TYPES = frozenset({"qmstart", "vzstart", "hastart"})
RAN_TYPES = frozenset({"qmstart", "vzstart", "qmstop", "vzstop", "qmshutdown", "vzshutdown"})
# Boot times come from uptime and the API's clock, read in two calls: they wobble by a few seconds.
BOOT_SLACK_S = 30.0
STARTALL_GRACE_S = 600.0  # a node up this long with no startall task since boot has none coming
_TASK_LIMIT = 2000
_SKIP_KEYS = frozenset({"digest", "description"})


@dataclass(frozen=True)
class TaskStatus:
    """A task's state: still running, or ended ok or not (with PVE's exit status)."""

    running: bool
    ok: bool = False
    exitstatus: str = ""


@dataclass(frozen=True)
class _Conf:
    gates: tuple[str, ...]
    onboot: bool
    order: int | None
    up: float | None
    name: str | None
    fetched: float


def config_text(data: dict[str, Any]) -> str:
    """An API config answer as config-file text, for startgate.core.guestconf."""
    lines = []
    for key, value in data.items():
        if key in _SKIP_KEYS or value is None:
            continue
        text = str(value).replace("\n", " ")
        lines.append(f"{key}: {text}")
    return "\n".join(lines) + "\n"


def _is_missing(exc: ProxmoxError) -> bool:
    return exc.status == 500 and "does not exist" in str(exc)


def _node_unreachable(exc: ProxmoxError) -> bool:
    # pveproxy proxies a call for another node with AnyEvent::HTTP (pve-http-server
    # src/PVE/APIServer/AnyEvent.pm `proxy_request`), whose 595 means the connection failed:
    # the node is down, and HA may have recovered the guest elsewhere.
    return exc.status == 595


def _tasks(data: Any) -> list[dict[str, Any]]:
    return [t for t in data if isinstance(t, dict)] if isinstance(data, list) else []


def _running(task: dict[str, Any]) -> bool:
    return task.get("endtime") is None or str(task.get("status", "")).upper() == "RUNNING"


def _ok(task: dict[str, Any]) -> bool:
    status = str(task.get("status", task.get("exitstatus", "")))
    return status == "OK" or status.startswith("WARNINGS")


def _vmid(task: dict[str, Any]) -> int | None:
    ident = str(task.get("id", ""))
    return int(ident) if ident.isdecimal() else None


class Pve:
    """The coordinator's API operations (thread-safe: its only shared state is the config cache)."""

    def __init__(
        self,
        client: ApiClient,
        rules: Sequence[GateRule],
        *,
        config_ttl_s: float = 300.0,
        up_scale: float = 1.0,
        ha_clear_wait_s: float = 30.0,
        ha_clear_poll_s: float = 0.25,
        mono: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.client = client
        self.rules = tuple(rules)
        self.config_ttl_s = config_ttl_s
        self.up_scale = up_scale
        self.ha_clear_wait_s = ha_clear_wait_s
        self.ha_clear_poll_s = ha_clear_poll_s
        self._sleep = sleep if sleep is not None else threading.Event().wait
        self._mono = mono
        self._confs: dict[tuple[int, str], _Conf] = {}
        self._lock = threading.Lock()

    # -- acting --------------------------------------------------------------------------------
    def start(self, node: str, type_: GuestType, vmid: int) -> str:
        """Start a guest; its UPID (ProxmoxError on failure)."""
        upid = self.client.post(f"/nodes/{node}/{type_}/{vmid}/status/start")
        if not isinstance(upid, str) or not upid.startswith("UPID:"):
            raise ProxmoxError(f"start of {vmid}: the API answered {upid!r}, not a UPID", 200)
        return upid

    def task_status(self, node: str, upid: str) -> TaskStatus:
        """Where a task stands."""
        data = self.client.get(f"/nodes/{node}/tasks/{upid_path(upid)}/status")
        if not isinstance(data, dict):
            raise ProxmoxError(f"task {upid}: unexpected status answer {data!r}", 200)
        if data.get("status") != "stopped":
            return TaskStatus(running=True)
        exitstatus = str(data.get("exitstatus", ""))
        return TaskStatus(False, exitstatus == "OK" or exitstatus.startswith("WARNINGS"), exitstatus)

    def set_ha_state(self, type_: GuestType, vmid: int, state: str) -> None:
        """Request an HA resource state.

        A service in `error` accepts only `disabled`, and stays in `error` until the CRM's next
        round has processed that (pve-ha-manager API2/HA/Resources.pm `check_service_state`,
        Manager.pm `next_state_error`): right after a `disabled`, `started` is refused for up to a
        CRM round, so it is asked again until `ha_clear_wait_s` has passed.
        """
        sid = f"{'vm' if type_ == 'qemu' else 'ct'}:{vmid}"
        deadline = self._mono() + self.ha_clear_wait_s
        while True:
            try:
                self.client.put(f"/cluster/ha/resources/{sid}", state=state)
            except ProxmoxError as exc:
                if state == "disabled" or "in error state" not in str(exc) or self._mono() >= deadline:
                    raise
                self._sleep(self.ha_clear_poll_s)
                continue
            return

    # -- configs -------------------------------------------------------------------------------
    def _conf(self, node: str, type_: GuestType, vmid: int, *, fresh: bool = False) -> _Conf:
        key = (vmid, node)
        now = self._mono()
        with self._lock:
            cached = self._confs.get(key)
        if cached is not None and not fresh and now - cached.fetched < self.config_ttl_s:
            return cached
        data = self.client.get(f"/nodes/{node}/{type_}/{vmid}/config")
        if not isinstance(data, dict):
            raise ProxmoxError(f"config of {vmid}: unexpected answer", 200)
        try:
            conf = guestconf.parse(config_text(data), vmid, type_, f"API config of {vmid}")
        except GuestConfigError as exc:
            raise ProxmoxError(str(exc), 200) from None
        gates = tuple(m.gate for m in membership.memberships(conf, self.rules))
        up = conf.startup.up * self.up_scale if conf.startup.up is not None else None
        out = _Conf(gates, conf.onboot, conf.startup.order, up, conf.name, now)
        with self._lock:
            self._confs[key] = out
        return out

    # -- one guest -----------------------------------------------------------------------------
    def observe(
        self, node: str, type_: GuestType, vmid: int, observed_at: float
    ) -> GuestObserved | GuestMissing:
        """A guest's live state; if it is no longer on `node`, found where it went (or missing)."""
        try:
            status = self.client.get(f"/nodes/{node}/{type_}/{vmid}/status/current")
        except ProxmoxError as exc:
            unreachable = _node_unreachable(exc)
            if not (_is_missing(exc) or unreachable):
                raise
            moved = self._find(vmid)
            if unreachable and (moved is None or moved[0] == node):
                raise  # still listed on its dead node: nothing more to learn now
            if moved is None:
                return GuestMissing(vmid)
            node, type_ = moved
            status = self.client.get(f"/nodes/{node}/{type_}/{vmid}/status/current")
        if not isinstance(status, dict):
            raise ProxmoxError(f"status of {vmid}: unexpected answer", 200)
        conf = self._conf(node, type_, vmid, fresh=True)
        tasks = _tasks(self.client.get(f"/nodes/{node}/tasks", vmid=vmid, source="all", limit=50))
        ha_raw = status.get("ha")
        ha: dict[str, Any] = ha_raw if isinstance(ha_raw, dict) else {}
        return self._observed(
            vmid,
            node,
            type_,
            status=str(status.get("status", "unknown")),
            lock=status.get("lock"),
            ha_managed=bool(ha.get("managed")),
            ha_state=ha.get("state"),
            conf=conf,
            tasks=tasks,
            observed_at=observed_at,
        )

    def _find(self, vmid: int) -> tuple[str, GuestType] | None:
        for r in self._resources():
            if r.get("vmid") == vmid:
                return str(r["node"]), "lxc" if r.get("type") == "lxc" else "qemu"
        return None

    def _observed(
        self,
        vmid: int,
        node: str,
        type_: GuestType,
        *,
        status: str,
        lock: Any,
        ha_managed: bool,
        ha_state: Any,
        conf: _Conf | None,
        tasks: list[dict[str, Any]],
        observed_at: float,
    ) -> GuestObserved:
        mine = [t for t in tasks if _vmid(t) == vmid]
        starting = any(_running(t) and t.get("type") in START_TYPES for t in mine)
        ran = [
            float(t["endtime"])
            for t in mine
            if not _running(t) and t.get("type") in RAN_TYPES and (_ok(t) or "stop" in str(t.get("type")))
        ]
        return GuestObserved(
            vmid=vmid,
            node=node,
            type=type_,
            status="running" if status == "running" else "stopped" if status == "stopped" else "unknown",
            gates=conf.gates if conf else (),
            onboot=conf.onboot if conf else False,
            order=conf.order if conf else None,
            up=conf.up if conf else None,
            ha_managed=ha_managed,
            ha_state=str(ha_state) if ha_state is not None else None,
            lock=str(lock) if lock else None,
            name=conf.name if conf else None,
            last_ran=max(ran, default=None),
            starting=starting,
            observed_at=observed_at,
        )

    # -- the whole cluster -----------------------------------------------------------------------
    def _resources(self) -> list[dict[str, Any]]:
        data = self.client.get("/cluster/resources", type="vm")
        return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []

    def _api_now(self, node: str) -> float | None:
        try:
            data = self.client.get(f"/nodes/{node}/time")
        except ProxmoxError as exc:
            log.debug("no API time from %s: %s", node, exc)
            return None
        value = data.get("time") if isinstance(data, dict) else None
        return float(value) if isinstance(value, int | float) else None

    def reconcile(self, nodes: Sequence[str] | None, observed_at: float, wall: float) -> list[Event]:
        """Every node, guest and failed start the API shows (limited to `nodes` when given)."""
        data = self.client.get("/nodes")
        listed = [n for n in data if isinstance(n, dict) and n.get("node")] if isinstance(data, list) else []
        online = [str(n["node"]) for n in listed if n.get("status") == "online"]
        api_now = self._api_now(online[0]) if online else None
        now = api_now if api_now is not None else wall
        out: list[Event] = []
        node_tasks: dict[str, list[dict[str, Any]]] = {}
        wanted = set(nodes) if nodes else None
        for n in listed:
            name = str(n["node"])
            if wanted is not None and name not in wanted:
                continue
            if n.get("status") != "online":
                out.append(NodeObserved(node=name, online=False, startall_done=False))
                continue
            uptime = float(n.get("uptime") or 0.0)
            boot = now - uptime
            since = int(boot - BOOT_SLACK_S)
            tasks = _tasks(
                self.client.get(f"/nodes/{name}/tasks", source="all", since=since, limit=_TASK_LIMIT)
            )
            node_tasks[name] = tasks
            out.append(NodeObserved(name, True, boot, _startall_done(tasks, boot, uptime)))
        guests: list[Event] = []
        for r in self._resources():
            node = str(r.get("node", ""))
            if node not in node_tasks or r.get("template") or not isinstance(r.get("vmid"), int):
                continue
            vmid = int(r["vmid"])
            type_: GuestType = "lxc" if r.get("type") == "lxc" else "qemu"
            status = str(r.get("status", "unknown"))
            conf = None
            if status != "running":  # running guests need no discovery: skip their configs
                try:
                    conf = self._conf(node, type_, vmid)
                except ProxmoxError as exc:
                    log.warning("reconcile: config of %s %s on %s: %s", type_, vmid, node, exc)
                    continue
            hastate = r.get("hastate")
            guests.append(
                self._observed(
                    vmid,
                    node,
                    type_,
                    status=status,
                    lock=r.get("lock"),
                    ha_managed=hastate is not None and hastate != "ignored",
                    ha_state=hastate,
                    conf=conf,
                    tasks=node_tasks[node],
                    observed_at=observed_at,
                )
            )
        out += guests
        for name, tasks in node_tasks.items():
            out += failed_starts(name, tasks)
        return out


def failed_starts(node: str, tasks: list[dict[str, Any]]) -> list[TaskObserved]:
    """The failed qmstart/vzstart tasks in a node's task list."""
    out = []
    for t in tasks:
        vmid = _vmid(t)
        if vmid is None or t.get("type") not in ("qmstart", "vzstart") or _running(t) or _ok(t):
            continue
        out.append(
            TaskObserved(
                node=node,
                upid=str(t.get("upid", "")),
                vmid=vmid,
                type=str(t["type"]),
                endtime=float(t["endtime"]),
                ok=False,
                exitstatus=str(t.get("status", ""))[:2000],
            )
        )
    return out


def _startall_done(tasks: list[dict[str, Any]], boot: float, uptime: float) -> bool:
    """Whether this boot's startall has ended (pve-guests runs it once per boot)."""
    runs = [
        t
        for t in tasks
        if t.get("type") == "startall" and float(t.get("starttime", 0)) >= boot - BOOT_SLACK_S
    ]
    if not runs:
        return uptime >= STARTALL_GRACE_S
    return not any(_running(t) for t in runs)
