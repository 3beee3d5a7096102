"""The simulated LINSTOR controller: /health while loading and after, satellites in /v1/nodes."""

from __future__ import annotations

import pytest
import requests

from startgate.sim.cluster import SimCluster
from tests.sim.conftest import Api, SimFactory, scenario


def _started_controller(make_sim: SimFactory) -> SimCluster:
    sim = make_sim(scenario())
    sim.boot_all()
    assert sim.clock.wait_for(lambda: all(n.startall_done for n in sim.nodes.values()), 60)
    api = Api(sim)
    api.wait_task("pve1", api.data("POST", "/nodes/pve1/qemu/100/status/start"))
    return sim


def test_nothing_listens_while_the_controller_vm_is_off(make_sim: SimFactory) -> None:
    """With VM 100 stopped, the controller's address refuses connections."""
    sim = make_sim(scenario())
    with pytest.raises(requests.ConnectionError):
        requests.get(sim.linstor_urls["linstor"][0] + "/health", timeout=2)


def test_health_is_500_while_loading_then_200(make_sim: SimFactory) -> None:
    """/health answers 500 "Services not running: ..." until the VM ran boot_s, then 200 with no body."""
    sim = _started_controller(make_sim)
    url = sim.linstor_urls["linstor"][0]
    assert url.endswith(":3370")
    r = requests.get(url + "/health", timeout=2)
    assert r.status_code == 500
    assert r.text.startswith("Services not running: ")
    assert sim.clock.wait_for(lambda: requests.get(url + "/health", timeout=2).status_code == 200, 60)
    assert requests.get(url + "/health", timeout=2).text == ""
    # The monitor records the change on its next tick, which may come after the first 200.
    assert sim.clock.wait_for(lambda: bool(sim.events.of_kind("gate_healthy")), 10)
    assert [e.detail for e in sim.events.of_kind("gate_healthy")] == ["linstor"]


def test_satellites_go_online_after_the_controller_is_healthy(make_sim: SimFactory) -> None:
    """/v1/nodes lists every node's satellite (ONLINE some time after health) and a CONTROLLER entry."""
    sim = _started_controller(make_sim)
    url = sim.linstor_urls["linstor"][0]
    assert sim.clock.wait_for(lambda: requests.get(url + "/health", timeout=2).status_code == 200, 60)
    first = {n["name"]: n for n in requests.get(url + "/v1/nodes", timeout=2).json()}
    assert first["pve1"]["type"] == "SATELLITE"
    assert first["pve1"]["connection_status"] == "OFFLINE"
    assert [n["type"] for n in first.values()].count("CONTROLLER") == 1

    def online() -> bool:
        nodes = requests.get(url + "/v1/nodes", timeout=2).json()
        return all(n["connection_status"] == "ONLINE" for n in nodes if n["type"] == "SATELLITE")

    assert sim.clock.wait_for(online, 60)


def test_flapping_controller_alternates(make_sim: SimFactory) -> None:
    """A flapping window turns /health 500 and 200 in turns."""
    sim = _started_controller(make_sim)
    url = sim.linstor_urls["linstor"][0] + "/health"
    assert sim.clock.wait_for(lambda: requests.get(url, timeout=2).status_code == 200, 60)
    now = sim.clock.elapsed()
    sim.controller_flapping("linstor", now, now + 100, 10)
    seen = set()
    for _ in range(40):
        seen.add(requests.get(url, timeout=2).status_code)
        sim.clock.sleep(1)
    assert seen == {200, 500}
    assert sim.events.of_kind("gate_unhealthy")
