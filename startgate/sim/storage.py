"""Volume activation as the storage plugins do it; LINSTOR's (linstor-proxmox 8.3.0) is the one that matters.

LINBIT/linstor-proxmox LINSTORPlugin.pm `linstor()`: the `controller` option is a comma list tried in
order, each with `GET http://<c>:3370/health`, the first 200 wins; otherwise
`die("could not connect to any LINSTOR controller")`. `activate_volume` (8.3.0) then falls back to
an existing local device: with `/dev/drbd/by-res/<res>/0` present it warns "LINSTOR controller
unreachable, using existing local DRBD device for <res>" and succeeds; without it it dies with
"could not connect to any LINSTOR controller and no local DRBD device exists for <res>". Legacy
volume names (`vm-101-disk-0`) are their own LINSTOR resource names (`pm_name_to_linstor_name`).
Other storage types activate without a dependency.
"""

from __future__ import annotations

import http.client
from typing import TYPE_CHECKING

from startgate.sim.model import Guest, Storage, Volume
from startgate.sim.tasks import Task, TaskError

if TYPE_CHECKING:
    from startgate.sim.cluster import SimCluster

HEALTH_TIMEOUT_REAL_S = 2.0


def health_ok(address: str, port: int) -> bool:
    """One `GET /health` as the plugin sends it: True only for a 200."""
    conn = http.client.HTTPConnection(address, port, timeout=HEALTH_TIMEOUT_REAL_S)
    try:
        conn.request("GET", "/health", headers={"User-Agent": "linstor-proxmox/8.3.0"})
        return conn.getresponse().status == 200
    except (TimeoutError, OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class StoragePlugins:
    """Activates a guest's volumes on a node, failing the way the real plugins fail."""

    def __init__(self, cluster: SimCluster) -> None:
        self._c = cluster

    def activate_volumes(self, node: str, guest: Guest, task: Task) -> None:
        """PVE::Storage::activate_volumes for every volume of `guest` on `node`."""
        for vol in guest.volumes:
            storage = self._c.storages[vol.storage]
            if storage.type == "drbd":
                self._linstor_activate(node, storage, vol, task)

    def _linstor_activate(self, node: str, storage: Storage, vol: Volume, task: Task) -> None:
        res = vol.volname
        ctrl = None
        for addr in storage.controllers:
            host, _, port = addr.partition(":")
            if health_ok(host, int(port or 3370)):
                ctrl = self._c.controller_at(host)
                break
        if ctrl is None:
            with self._c.lock:
                local = res in self._c.nodes[node].local_drbd
            if local:
                task.log(f"LINSTOR controller unreachable, using existing local DRBD device for {res}")
                return
            raise TaskError(
                f"could not connect to any LINSTOR controller and no local DRBD device exists for {res}"
            )
        if not ctrl.satellite_online(node):
            # make-available on a node whose satellite is not ONLINE fails on the controller.
            # Shape from LINBIT::Linstor `dieContent`; the controller's exact text is UNVERIFIED.
            raise TaskError(
                f"API Return-Code: 500. Message: Could not make resource available {res} on node {node}, "
                f"because: Node '{node}' is not connected (satellite OFFLINE)"
            )
