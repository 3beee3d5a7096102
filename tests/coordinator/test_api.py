"""The Proxmox adapter and the API operations against the simulated Proxmox API (real HTTPS)."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from startgate.coordinator.api import Pve
from startgate.coordinator.proxmox import ProxmoxClient
from startgate.core.events import GuestMissing, GuestObserved, NodeObserved, TaskObserved
from startgate.core.membership import GateRule
from startgate.errors import ProxmoxError
from startgate.sim.acl import ApiToken
from startgate.sim.cluster import SimCluster
from tests.sim.conftest import SimFactory, scenario

RULES = (GateRule("linstor", 100, frozenset({"drbdstorage"}), frozenset(), frozenset()),)
GUESTS = [
    {"vmid": 101, "node": "pve2", "disks": ["drbdstorage"], "onboot": True, "startup": "order=1,up=20"},
    {"vmid": 102, "node": "pve3", "type": "lxc", "disks": ["drbdstorage"], "onboot": True},
    {"vmid": 103, "node": "pve3", "disks": ["local-lvm"], "onboot": True},
]


def _client(sim: SimCluster, token: ApiToken | None = None, timeout: float = 5.0) -> ProxmoxClient:
    t = token or sim.token
    return ProxmoxClient(sim.api.base_url, t.token_id, t.secret, verify=str(sim.ca_file), timeout_s=timeout)


def _booted(make_sim: SimFactory) -> SimCluster:
    sim = make_sim(scenario(extra_guests=GUESTS))
    sim.boot_all()
    assert sim.clock.wait_for(lambda: all(n.up and n.startall_done for n in sim.nodes.values()), 300)
    return sim


def _wait_task(pve: Pve, node: str, upid: str) -> bool:
    done = threading.Event()
    for _ in range(200):
        st = pve.task_status(node, upid)
        if not st.running:
            return st.ok
        done.wait(0.02)
    raise AssertionError(f"{upid} never ended")


def test_reconcile_sees_nodes_guests_and_failed_starts(make_sim: SimFactory) -> None:
    """Boot times in the API's clock, startall done, membership from configs, the plugin's failures."""
    sim = _booted(make_sim)
    pve = Pve(_client(sim), RULES, up_scale=0.5)
    events = pve.reconcile(None, time.time(), time.time())
    nodes = {e.node: e for e in events if isinstance(e, NodeObserved)}
    assert set(nodes) == {"pve1", "pve2", "pve3"}
    assert all(n.online and n.startall_done and n.boot_time for n in nodes.values())
    assert abs(nodes["pve1"].boot_time - (sim.clock.now() - sim.node_uptime("pve1"))) < 30  # type: ignore[operator]
    guests = {e.vmid: e for e in events if isinstance(e, GuestObserved)}
    assert guests[101].gates == ("linstor",)
    assert guests[101].order == 1
    assert guests[101].up == 10.0
    assert guests[101].onboot
    assert guests[101].status == "stopped"
    assert guests[102].type == "lxc"
    assert guests[102].gates == ("linstor",)
    assert guests[103].status == "running"
    assert guests[103].last_ran is not None
    failed = {e.vmid: e for e in events if isinstance(e, TaskObserved)}
    assert {101, 102} <= set(failed)
    assert "LINSTOR" in failed[102].exitstatus
    assert events.index(nodes["pve1"]) < events.index(guests[101]) < events.index(failed[101])


def test_start_follow_and_observe(make_sim: SimFactory) -> None:
    """A start gives a UPID whose task is followed to its end; a missing guest is GuestMissing."""
    sim = _booted(make_sim)
    pve = Pve(_client(sim), RULES)
    upid = pve.start("pve2", "qemu", 101)
    assert upid.startswith("UPID:pve2:")
    assert ":qmstart:101:" in upid
    assert _wait_task(pve, "pve2", upid) is False  # the gate is down: the plugin fails it
    seen = pve.observe("pve1", "qemu", 101, 5.0)  # asked on the wrong node: found where it is
    assert isinstance(seen, GuestObserved)
    assert seen.node == "pve2"
    assert seen.status == "stopped"
    assert seen.observed_at == 5.0
    assert isinstance(pve.observe("pve2", "qemu", 999, 1.0), GuestMissing)


def test_a_guest_on_a_dead_node_is_looked_for_where_ha_recovered_it(make_sim: SimFactory) -> None:
    """Asked on a node that is down (595), the guest is found on the node HA moved it to."""
    sim = _booted(make_sim)
    pve = Pve(_client(sim), RULES)
    sim.kill_node("pve3")
    with pytest.raises(ProxmoxError) as err:  # still listed on its dead node: nothing to learn
        pve.observe("pve3", "qemu", 103, 1.0)
    assert err.value.status == 595
    sim.move_guest(sim.guests[103], "pve2")  # what the CRM's recovery does after fencing
    seen = pve.observe("pve3", "qemu", 103, 2.0)
    assert isinstance(seen, GuestObserved)
    assert seen.node == "pve2"


def test_api_errors_carry_their_status(make_sim: SimFactory) -> None:
    """403 (a token without VM.PowerMgmt), an injected 503, and a timeout (status 0) are ProxmoxErrors."""
    sim = _booted(make_sim)
    with pytest.raises(ProxmoxError) as err:
        Pve(_client(sim, sim.audit_token), RULES).start("pve2", "qemu", 101)
    assert err.value.status == 403
    assert "VM.PowerMgmt" in str(err.value)
    sim.inject_api_fault(status=503, from_s=0, until_s=1e9, path="status/start")
    with pytest.raises(ProxmoxError) as err:
        Pve(_client(sim), RULES).start("pve2", "qemu", 101)
    assert err.value.status == 503
    sim.inject_api_fault(status=500, from_s=0, until_s=1e9, path="/cluster/resources", delay_s=500.0)
    with pytest.raises(ProxmoxError) as err:
        Pve(_client(sim, timeout=0.3), RULES).reconcile(None, 0.0, 0.0)
    assert err.value.status == 0
    assert "no answer within" in str(err.value)


def test_tls_verify_wins_over_requests_ca_bundle(
    make_sim: SimFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$REQUESTS_CA_BUNDLE naming another CA does not override the configured one (requests#3829)."""
    sim = make_sim(scenario())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.utils.DEFAULT_CA_BUNDLE_PATH)
    assert isinstance(_client(sim).get("/version"), dict)
    bad = ProxmoxClient(sim.api.base_url, sim.token.token_id, sim.token.secret, verify=True, timeout_s=5)
    with pytest.raises(ProxmoxError) as err:
        bad.get("/version")
    assert err.value.status == 0
    assert "TLS" in str(err.value)
