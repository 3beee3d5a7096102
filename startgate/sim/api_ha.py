"""The simulated API's HA endpoints (proxmox/pve-ha-manager).

src/PVE/API2/HA/Status.pm `status` (`/cluster/ha/status/current`: quorum, master, lrm:<node> and
service:<sid> entries; Sys.Audit) and src/PVE/API2/HA/Resources.pm `index`, `read` (Sys.Audit) and
`update` (Sys.Console; `check_service_state`: a service in `error` accepts only `disabled`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from startgate.sim import pvefiles
from startgate.sim.acl import ApiError, param_error
from startgate.sim.api_routes import Handler, Request, Route, route
from startgate.sim.ha import verbose_state
from startgate.sim.model import Guest

if TYPE_CHECKING:
    from startgate.sim.cluster import SimCluster

ROUTES: list[Route] = []


def _route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    return route(method, pattern, ROUTES)


@_route("GET", r"/cluster/ha/status/current")
def ha_status(c: SimCluster, req: Request) -> Any:
    """GET /cluster/ha/status/current: quorum, master, lrm:<node> and service:<sid> entries (Sys.Audit)."""
    c.acl.check(req.token, "/", "Sys.Audit")
    with c.lock:
        up = sorted(n for n, x in c.nodes.items() if x.up)
        here = up[0] if up else min(c.nodes)
        q = c.quorate()
        stamp = int(c.clock.now())
        when = time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(stamp))
        out: list[dict[str, Any]] = [
            {
                "id": "quorum",
                "type": "quorum",
                "node": here,
                "status": "OK" if q else f"No quorum on node '{here}'!",
                "quorate": int(q),
            }
        ]
        if q:
            out.append(
                {
                    "id": "master",
                    "type": "master",
                    "node": here,
                    "status": f"{here} (active, {when})",
                    "timestamp": stamp,
                }
            )
        out += [
            {
                "id": f"lrm:{n}",
                "type": "lrm",
                "node": n,
                "status": f"{n} (active, {when})",
                "timestamp": stamp,
            }
            for n in up
        ]
        for g in sorted(c.ha.guests(), key=lambda g: g.sid):
            ha = g.ha_resource()
            state = verbose_state(ha)
            out.append({
                "id": f"service:{g.sid}", "type": "service", "sid": g.sid, "node": g.node,
                "crm_state": ha.crm_state,
                "request_state": ha.state, "state": state, "status": f"{g.sid} ({g.node}, {state})",
                "max_restart": ha.max_restart, "max_relocate": ha.max_relocate,
            })  # fmt: skip
    return out


def _resource(g: Guest) -> dict[str, Any]:
    ha = g.ha_resource()
    text = pvefiles.render_ha_resources([g])
    return {
        "sid": g.sid, "type": "vm" if g.kind == "qemu" else "ct", "state": ha.state,
        "digest": pvefiles.digest(text),
        "max_restart": ha.max_restart, "max_relocate": ha.max_relocate, "failback": 1,
    }  # fmt: skip


@_route("GET", r"/cluster/ha/resources")
def ha_resources(c: SimCluster, req: Request) -> Any:
    """GET /cluster/ha/resources (Sys.Audit)."""
    c.acl.check(req.token, "/", "Sys.Audit")
    with c.lock:
        return [_resource(g) for g in sorted(c.ha.guests(), key=lambda g: g.sid)]


def _ha_guest(c: SimCluster, sid: str) -> Guest:
    sid = c.ha.resolve_sid(sid)
    for g in c.ha.guests():
        if g.sid == sid:
            return g
    raise ApiError(500, f"no such resource '{sid}'")


@_route("GET", r"/cluster/ha/resources/([^/]+)")
def ha_resource(c: SimCluster, req: Request, sid: str) -> Any:
    """GET /cluster/ha/resources/{sid} (Sys.Audit)."""
    c.acl.check(req.token, "/", "Sys.Audit")
    with c.lock:
        return _resource(_ha_guest(c, sid))


@_route("PUT", r"/cluster/ha/resources/([^/]+)")
def ha_resource_update(c: SimCluster, req: Request, sid: str) -> Any:
    """PUT /cluster/ha/resources/{sid} state=...: `error` accepts only `disabled` (Sys.Console)."""
    c.acl.check(req.token, "/", "Sys.Console")
    state = req.params.get("state")
    if state is not None:
        if state not in {"started", "stopped", "enabled", "disabled", "ignored"}:
            raise param_error(
                "state",
                f"value '{state}' does not have a value in the enumeration "
                "'started, stopped, enabled, disabled, ignored'",
            )
        c.ha.set_state(_ha_guest(c, sid).sid, "started" if state == "enabled" else state)
    return None
