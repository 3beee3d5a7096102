"""Helpers for the simulator's tests: small scenarios, a started cluster, an API session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from startgate.sim import scenario as scn
from startgate.sim.acl import ApiToken
from startgate.sim.cluster import SimCluster
from startgate.sim.hooks import HookRunner

BASE: dict[str, Any] = {
    "name": "test",
    "nodes": [
        {"name": "pve1", "boot_s": 1.0},
        {"name": "pve2", "boot_s": 1.0},
        {"name": "pve3", "boot_s": 1.0},
    ],
    "storages": [
        {"id": "local", "type": "dir", "path": "/var/lib/vz", "content": ["snippets"]},
        {"id": "local-lvm", "type": "lvmthin", "content": ["images", "rootdir"]},
        {
            "id": "drbdstorage",
            "type": "drbd",
            "content": ["images", "rootdir"],
            "controller_gates": ["linstor"],
        },
    ],
    "gates": [
        {"name": "linstor", "vmid": 100, "storages": ["drbdstorage"], "boot_s": 30.0, "satellite_s": 5.0}
    ],
    "guests": [{"vmid": 100, "node": "pve1", "disks": ["local-lvm"], "name": "linstor-ctrl"}],
}


def scenario(**overrides: Any) -> scn.Scenario:
    """BASE with top-level keys replaced; `extra_guests` appends to the guest list."""
    data = dict(BASE)
    extra = overrides.pop("extra_guests", [])
    data |= overrides
    data["guests"] = list(data["guests"]) + list(extra)
    return scn.Scenario.model_validate(data)


SimFactory = Callable[..., SimCluster]


@pytest.fixture
def make_sim() -> Iterator[SimFactory]:
    """Start clusters (closed at the end of the test): make_sim(scenario, scale=..., hook_runner=...)."""
    made: list[SimCluster] = []

    def make(
        s: scn.Scenario, scale: float = 0.01, hook_runner: HookRunner | None = None, tls: bool = True
    ) -> SimCluster:
        sim = SimCluster.from_scenario(s, scale=scale, hook_runner=hook_runner, tls=tls).start()
        made.append(sim)
        return sim

    yield make
    for sim in made:
        sim.close()


class Api:
    """A tiny client for the simulated API (requests, token header, the sim's certificate)."""

    def __init__(self, sim: SimCluster, token: ApiToken | None = None) -> None:
        self.sim = sim
        self.s = requests.Session()
        self.s.headers["Authorization"] = (token or sim.token).header
        # Passed per request: a session-level verify loses to $REQUESTS_CA_BUNDLE (requests#3829).
        self.verify: str | bool = str(sim.ca_file) if sim.ca_file else True

    def call(self, method: str, path: str, **params: Any) -> requests.Response:
        """One call; params go in the query (GET) or the form body."""
        url = self.sim.api_url + path
        if method == "GET":
            return self.s.get(url, params=params, timeout=10, verify=self.verify)
        return self.s.request(method, url, data=params, timeout=10, verify=self.verify)

    def data(self, method: str, path: str, **params: Any) -> Any:
        """The `data` of a successful call."""
        r = self.call(method, path, **params)
        assert r.status_code == 200, (r.status_code, r.reason, r.text)
        return r.json()["data"]

    def wait_task(self, node: str, upid: str, timeout_sim: float = 300) -> dict[str, Any]:
        """Poll a task until it stopped; return its status."""
        status: dict[str, Any] = {}

        def done() -> bool:
            nonlocal status
            status = self.data("GET", f"/nodes/{node}/tasks/{upid}/status")
            return bool(status["status"] == "stopped")

        assert self.sim.clock.wait_for(done, timeout_sim, poll=1.0), f"task {upid} still running"
        return status


def write_hook(sim: SimCluster, body: str, name: str = "hook.sh") -> str:
    """Install a shell hookscript on every node; return its volume id."""
    text = "#!/bin/sh\n" + body + "\n"
    volid = ""
    for node in sim.nodes:
        volid = sim.install_snippet(node, name, text)
    return volid


def hook_log(sim: SimCluster) -> Path:
    """A file hooks may append to (`echo ... >> $LOG`)."""
    return sim.root / "hook.log"
