"""The simulated API's endpoints: each returns the `data` of the real answer or raises ApiError.

Shapes and privileges follow the real handlers: proxmox/pve-manager PVE/API2/Cluster.pm
`resources`, PVE/API2/Nodes.pm (node index), PVE/API2/Tasks.pm (`node_tasks`: vmid, typefilter,
errors, source, userfilter, start, limit; `read_task_status`; `read_task_log`); qemu-server
src/PVE/API2/Qemu.pm and pve-container src/PVE/API2/LXC{,/Status}.pm (`vm_config`, `vm_status`
with `ha` from PVE::HA::Config::get_service_status, `vm_start`, `vm_stop`). HA endpoints: api_ha.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from startgate.sim import pvefiles
from startgate.sim.acl import ApiError, ApiToken, param_error
from startgate.sim.model import Guest
from startgate.sim.tasks import Task, Upid

if TYPE_CHECKING:
    from startgate.sim.cluster import SimCluster

PVE_VERSION = "9.1.1"


@dataclass(frozen=True)
class Request:
    """An authenticated API call: method, path below /api2/json, parameters, the caller's token."""

    method: str
    path: str
    params: dict[str, str]
    token: ApiToken


Handler = Callable[..., Any]
Route = tuple[str, re.Pattern[str], Handler]
ROUTES: list[Route] = []


def route(method: str, pattern: str, table: list[Route] = ROUTES) -> Callable[[Handler], Handler]:
    """Register a handler for `method` on paths matching `pattern` (groups become arguments)."""

    def deco(fn: Handler) -> Handler:
        table.append((method, re.compile(pattern), fn))
        return fn

    return deco


def _bool(req: Request, name: str) -> bool:
    v = req.params.get(name, "0").lower()
    if v not in {"0", "1", "true", "false", "on", "off", "yes", "no", ""}:
        raise param_error(name, f"type check ('boolean') failed - got '{v}'")
    return v in {"1", "true", "on", "yes"}


def _int(req: Request, name: str, default: int) -> int:
    v = req.params.get(name)
    if v is None or v == "":
        return default
    if not v.isdecimal():
        raise param_error(name, f"type check ('integer') failed - got '{v}'")
    return int(v)


def _node_up(c: SimCluster, node: str) -> None:
    if node not in c.nodes:
        raise ApiError(
            500,
            f"hostname lookup '{node}' failed - failed to get address info for: {node}: "
            "Name or service not known",
        )
    if not c.nodes[node].up:
        # pveproxy cannot proxy the call to a node that is down (UNVERIFIED exact text).
        raise ApiError(
            595, f"Errors during connection establishment, proxy handshake: No route to host ({node})"
        )


def _guest(c: SimCluster, node: str, kind: str, vmid: str) -> Guest:
    _node_up(c, node)
    g = c.guests.get(int(vmid))
    want = "qemu" if kind == "qemu" else "lxc"
    if g is None or g.node != node or g.kind != want:
        sub = "qemu-server" if want == "qemu" else "lxc"
        raise ApiError(500, f"Configuration file 'nodes/{node}/{sub}/{vmid}.conf' does not exist")
    return g


def _uptime(c: SimCluster, g: Guest) -> int:
    return int(c.clock.elapsed() - g.running_since) if g.running and g.running_since is not None else 0


def _ha_status(g: Guest) -> dict[str, Any]:
    # PVE::HA::Config::get_service_status: {managed => 0} or {managed => 1, state => <CRM state>}.
    if g.ha is None or not g.ha.managed:
        return {"managed": 0}
    return {"managed": 1, "state": g.ha.crm_state}


@route("GET", r"/version")
def version(_c: SimCluster, _req: Request) -> Any:
    """GET /version."""
    return {"version": PVE_VERSION, "release": "9.1", "repoid": "simulated"}


@route("GET", r"/access/permissions")
def permissions(_c: SimCluster, req: Request) -> Any:
    """The caller's own effective privileges: ACL path -> {privilege: propagate}.

    proxmox/pve-access-control src/PVE/API2/AccessControl.pm `permissions` (every user or token may
    read its own); the simulator grants privileges on `/` only, and they propagate.
    """
    return {"/": dict.fromkeys(sorted(req.token.privileges), 1)}


@route("GET", r"/nodes")
def nodes(c: SimCluster, _req: Request) -> Any:
    """GET /nodes: every node with its online state."""
    out = []
    with c.lock:
        for name, n in sorted(c.nodes.items()):
            entry: dict[str, Any] = {
                "node": name,
                "id": f"node/{name}",
                "type": "node",
                "status": "online" if n.up else "offline",
            }
            if n.up:
                entry |= {"uptime": int(c.node_uptime(name) or 0), "maxcpu": n.cpus, "cpu": 0.02, "level": ""}
            out.append(entry)
    return out


@route("GET", r"/nodes/([^/]+)/time")
def node_time(c: SimCluster, _req: Request, node: str) -> Any:
    """GET /nodes/{node}/time: the node's clock (the simulated one; API times are in it).

    Shape as the real `GET /nodes/{node}/time`: {localtime, time, timezone} (UNVERIFIED: the
    handler's file in proxmox/pve-manager was not read; the shape is the documented API's).
    """
    _node_up(c, node)
    now = int(c.clock.now())
    return {"time": now, "localtime": now, "timezone": "UTC"}


@route("GET", r"/cluster/status")
def cluster_status(c: SimCluster, _req: Request) -> Any:
    """GET /cluster/status: the cluster entry (quorate) and one entry per node."""
    with c.lock:
        up = [n for n in c.nodes.values() if n.up]
        out: list[dict[str, Any]] = [
            {
                "type": "cluster",
                "id": "cluster",
                "name": c.scenario.cluster,
                "nodes": len(c.nodes),
                "quorate": int(c.quorate()),
                "version": 4,
            }
        ]
        for i, (name, n) in enumerate(sorted(c.nodes.items()), start=1):
            out.append(
                {
                    "type": "node",
                    "id": f"node/{name}",
                    "name": name,
                    "nodeid": i,
                    "online": int(n.up),
                    "local": int(bool(up) and up[0] is n),
                }
            )
    return out


@route("GET", r"/cluster/resources")
def resources(c: SimCluster, req: Request) -> Any:
    """GET /cluster/resources[?type=vm|node|storage]; VM entries need VM.Audit."""
    typ = req.params.get("type")
    if typ not in {None, "vm", "node", "storage", "sdn"}:
        raise param_error(
            "type", f"value '{typ}' does not have a value in the enumeration 'vm, storage, node, sdn'"
        )
    out: list[dict[str, Any]] = []
    with c.lock:
        if typ in {None, "vm"} and c.acl.has(req.token, "VM.Audit"):
            for g in sorted(c.guests.values(), key=lambda g: g.vmid):
                up = c.nodes[g.node].up
                entry: dict[str, Any] = {
                    "id": f"{g.kind}/{g.vmid}", "vmid": g.vmid, "type": g.kind, "node": g.node,
                    "name": g.name,
                    "status": ("running" if g.running else "stopped") if up else "unknown", "template": 0,
                    "uptime": _uptime(c, g),
                    "maxmem": g.memory * 1024 * 1024, "maxcpu": 2, "maxdisk": 34359738368,
                }  # fmt: skip
                if g.tags:
                    entry["tags"] = ";".join(g.tags)
                if g.lock:
                    entry["lock"] = g.lock
                if g.ha is not None and g.ha.managed:
                    entry["hastate"] = g.ha.crm_state
                out.append(entry)
        if typ in {None, "node"}:
            out += [
                {"id": f"node/{n}", "type": "node", "node": n, "status": "online" if x.up else "offline"}
                for n, x in c.nodes.items()
            ]
    return out


@route("GET", r"/nodes/([^/]+)/(qemu|lxc)")
def guest_index(c: SimCluster, req: Request, node: str, kind: str) -> Any:
    """GET /nodes/{node}/qemu|lxc: the node's guests of that type."""
    _node_up(c, node)
    with c.lock:
        gs = [
            g
            for g in c.guests.values()
            if g.node == node and g.kind == kind and c.acl.has(req.token, "VM.Audit")
        ]
        return [{"vmid": g.vmid, "name": g.name, "status": "running" if g.running else "stopped"} for g in gs]


@route("GET", r"/nodes/([^/]+)/(qemu|lxc)/(\d+)/config")
def guest_config(c: SimCluster, req: Request, node: str, kind: str, vmid: str) -> Any:
    """GET .../config: the config keys plus its digest (VM.Audit)."""
    c.acl.check(req.token, f"/vms/{vmid}", "VM.Audit")
    with c.lock:
        g = _guest(c, node, kind, vmid)
        text = pvefiles.render_guest_conf(g)
    out: dict[str, Any] = {"digest": pvefiles.digest(text)}
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        out[key] = int(value) if key in {"onboot", "cores", "memory", "unprivileged"} else value
    return out


@route("GET", r"/nodes/([^/]+)/(qemu|lxc)/(\d+)/status/current")
def guest_status(c: SimCluster, req: Request, node: str, kind: str, vmid: str) -> Any:
    """GET .../status/current: running or stopped, with the `ha` object (VM.Audit)."""
    c.acl.check(req.token, f"/vms/{vmid}", "VM.Audit")
    with c.lock:
        g = _guest(c, node, kind, vmid)
        out: dict[str, Any] = {
            "vmid": g.vmid, "name": g.name, "status": "running" if g.running else "stopped",
            "ha": _ha_status(g),
            "uptime": _uptime(c, g),
            "maxmem": g.memory * 1024 * 1024, "cpus": 2,
        }  # fmt: skip
        if kind == "qemu":
            out["qmpstatus"] = out["status"]
            if g.running:
                out["pid"] = 4000 + g.vmid
        if g.lock:
            out["lock"] = g.lock
        if g.tags:
            out["tags"] = ";".join(g.tags)
    return out


@route("POST", r"/nodes/([^/]+)/(qemu|lxc)/(\d+)/status/start")
def guest_start(c: SimCluster, req: Request, node: str, kind: str, vmid: str) -> Any:
    """POST .../status/start: a UPID (qmstart, vzstart or hastart) (VM.PowerMgmt)."""
    c.acl.check(req.token, f"/vms/{vmid}", "VM.PowerMgmt")
    for root_only in ("skiplock", "stateuri", "migratedfrom", "machine", "force-cpu"):
        if req.params.get(root_only):
            raise param_error(root_only, "Only root may use this option.")
    with c.lock:
        _guest(c, node, kind, vmid)
    return c.ops.start(int(vmid), node, req.token.token_id, f"api:{req.token.token_id}").text


@route("POST", r"/nodes/([^/]+)/(qemu|lxc)/(\d+)/status/stop")
def guest_stop(c: SimCluster, req: Request, node: str, kind: str, vmid: str) -> Any:
    """POST .../status/stop: a qmstop / vzstop UPID (VM.PowerMgmt)."""
    c.acl.check(req.token, f"/vms/{vmid}", "VM.PowerMgmt")
    with c.lock:
        _guest(c, node, kind, vmid)
    return c.ops.stop(int(vmid), node, req.token.token_id, f"api:{req.token.token_id}").text


def _may_see(c: SimCluster, req: Request, task: Task) -> bool:
    # Tasks.pm `$check_task_user`: a token sees its own tasks; else Sys.Audit on /nodes/<node>.
    return task.upid.user == req.token.token_id or c.acl.has(req.token, "Sys.Audit")


@route("GET", r"/nodes/([^/]+)/tasks")
def task_list(c: SimCluster, req: Request, node: str) -> Any:
    """GET /nodes/{node}/tasks: filters vmid, typefilter, errors, userfilter, source, since, start, limit."""
    _node_up(c, node)
    start, limit = _int(req, "start", 0), _int(req, "limit", 50)
    vmid, typ, user = req.params.get("vmid"), req.params.get("typefilter"), req.params.get("userfilter")
    errors, source, since = _bool(req, "errors"), req.params.get("source", "archive"), req.params.get("since")
    out: list[dict[str, Any]] = []
    count = 0
    for t in c.tasks.all(node):
        if (source == "archive" and t.running) or (source == "active" and not t.running):
            continue
        if not _may_see(c, req, t) or (typ and t.upid.type != typ) or (vmid and t.upid.id != vmid):
            continue
        if (user and user.lower() not in t.upid.user.lower()) or (since and t.upid.starttime < int(since)):
            continue
        if errors and not t.running and not t.failed:
            continue
        count += 1
        if count <= start or len(out) >= limit:
            continue
        entry = t.as_json()
        entry.pop("exitstatus", None)
        entry["status"] = "RUNNING" if t.running else t.exitstatus
        if t.endtime is not None:
            entry["endtime"] = t.endtime
        out.append(entry)
    return out


def _task(c: SimCluster, req: Request, node: str, upid: str) -> Task:
    if Upid.decode(upid) is None:
        raise param_error("upid", "unable to parse worker upid")
    task = c.tasks.get(upid)
    if task is None or task.upid.node != node:
        raise param_error("upid", "no such task")
    if not _may_see(c, req, task):
        raise ApiError(403, f"Permission check failed (/nodes/{node}, Sys.Audit)")
    return task


@route("GET", r"/nodes/([^/]+)/tasks/([^/]+)/status")
def task_status(c: SimCluster, req: Request, node: str, upid: str) -> Any:
    """GET /nodes/{node}/tasks/{upid}/status: running/stopped and, once stopped, exitstatus."""
    _node_up(c, node)
    return _task(c, req, node, upid).as_json()


@route("GET", r"/nodes/([^/]+)/tasks/([^/]+)/log")
def task_log(c: SimCluster, req: Request, node: str, upid: str) -> Any:
    """GET /nodes/{node}/tasks/{upid}/log: lines as {n, t}."""
    _node_up(c, node)
    task = _task(c, req, node, upid)
    start, limit = _int(req, "start", 0), _int(req, "limit", 50)
    lines = list(task.lines) or ["no content"]
    return [{"n": i + 1, "t": line} for i, line in enumerate(lines) if start <= i < start + limit]
