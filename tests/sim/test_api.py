"""The simulated Proxmox API: auth, privileges, answer shapes, tasks."""

from __future__ import annotations

from startgate.sim.cluster import SimCluster
from startgate.sim.tasks import Upid
from tests.sim.conftest import Api, SimFactory, scenario, write_hook


def _booted(make_sim: SimFactory, **overrides: object) -> SimCluster:
    sim = make_sim(scenario(**overrides))
    sim.boot_all()
    assert sim.clock.wait_for(lambda: all(n.startall_done for n in sim.nodes.values()), 120)
    return sim


def test_wrong_token_gets_401_after_a_delay(make_sim: SimFactory) -> None:
    """A wrong secret is refused with 401 "Authentication failed!" only after 3 simulated seconds."""
    sim = make_sim(scenario())
    api = Api(sim)
    api.s.headers["Authorization"] = f"PVEAPIToken={sim.token.token_id}=wrong-secret"
    t0 = sim.clock.elapsed()
    r = api.call("GET", "/nodes")
    assert r.status_code == 401
    assert r.reason == "Authentication failed!"
    assert sim.clock.elapsed() - t0 >= 3.0
    del api.s.headers["Authorization"]
    assert api.call("GET", "/nodes").reason == "No ticket"


def test_api_is_https_with_its_own_certificate(make_sim: SimFactory) -> None:
    """The API speaks HTTPS on loopback; the certificate file verifies it."""
    sim = make_sim(scenario())
    assert sim.api_url.startswith("https://127.0.0.1:")
    assert sim.api_url.endswith("/api2/json")
    assert sim.ca_file is not None
    assert Api(sim).data("GET", "/version")["version"]


def test_token_without_powermgmt_gets_403_on_start(make_sim: SimFactory) -> None:
    """The audit token may read but not start: 403 "Permission check failed (/vms/100, VM.PowerMgmt)"."""
    sim = _booted(make_sim)
    api = Api(sim, sim.audit_token)
    assert api.data("GET", "/nodes/pve1/qemu/100/status/current")["status"] == "stopped"
    r = api.call("POST", "/nodes/pve1/qemu/100/status/start")
    assert r.status_code == 403
    assert r.json()["message"] == "Permission check failed (/vms/100, VM.PowerMgmt)\n"
    r = api.call("PUT", "/cluster/ha/resources/vm:100", state="started")
    assert r.status_code == 403


def test_access_permissions_lists_the_callers_own_privileges(make_sim: SimFactory) -> None:
    """/access/permissions maps `/` to each privilege of the calling token (propagating)."""
    sim = make_sim(scenario())
    mine = Api(sim).data("GET", "/access/permissions")
    assert mine == {"/": dict.fromkeys(sorted(sim.token.privileges), 1)}
    audit = Api(sim, sim.audit_token).data("GET", "/access/permissions")
    assert set(audit["/"]) == {"VM.Audit", "Sys.Audit"}


def test_resources_nodes_config_and_status_shapes(make_sim: SimFactory) -> None:
    """cluster/resources, nodes, config and status/current answer in the real shapes."""
    sim = _booted(
        make_sim,
        extra_guests=[
            {"vmid": 101, "node": "pve2", "disks": ["drbdstorage"], "onboot": True, "startup": "order=2,up=5",
             "tags": ["web", "prod"], "ha": {"state": "stopped"}},
            {"vmid": 105, "type": "lxc", "node": "pve3", "disks": ["drbdstorage:vm-105-disk-0,size=8G"]},
        ],
    )  # fmt: skip
    api = Api(sim)
    nodes = api.data("GET", "/nodes")
    assert {n["node"]: n["status"] for n in nodes} == {"pve1": "online", "pve2": "online", "pve3": "online"}
    res = {r["vmid"]: r for r in api.data("GET", "/cluster/resources", type="vm")}
    assert res[101]["id"] == "qemu/101"
    assert res[101]["type"] == "qemu"
    assert res[101]["node"] == "pve2"
    assert res[101]["tags"] == "web;prod"
    assert res[101]["hastate"] == "stopped"
    assert res[105]["type"] == "lxc"
    assert "hastate" not in res[105]
    conf = api.data("GET", "/nodes/pve2/qemu/101/config")
    assert conf["onboot"] == 1
    assert conf["startup"] == "order=2,up=5"
    assert conf["scsi0"] == "drbdstorage:vm-101-disk-0,size=32G"
    assert conf["tags"] == "web;prod"
    assert len(conf["digest"]) == 40
    ct = api.data("GET", "/nodes/pve3/lxc/105/config")
    assert ct["rootfs"] == "drbdstorage:vm-105-disk-0,size=8G"
    cur = api.data("GET", "/nodes/pve2/qemu/101/status/current")
    assert cur["status"] == "stopped"
    assert cur["ha"]["managed"] == 1
    assert api.data("GET", "/nodes/pve3/lxc/105/status/current")["ha"] == {"managed": 0}
    r = api.call("GET", "/nodes/pve1/qemu/101/config")
    assert r.status_code == 500
    assert r.json()["message"] == "Configuration file 'nodes/pve1/qemu-server/101.conf' does not exist\n"
    on_disk = sim.config_dir / "nodes/pve2/qemu-server/101.conf"
    assert "startup: order=2,up=5\n" in on_disk.read_text()
    assert "drbd: drbdstorage\n" in (sim.config_dir / "storage.cfg").read_text()


def test_start_returns_a_real_upid_and_task_status(make_sim: SimFactory) -> None:
    """A start answers a UPID in the real format; its status ends stopped with exitstatus OK."""
    sim = _booted(make_sim)
    api = Api(sim)
    upid = api.data("POST", "/nodes/pve1/qemu/100/status/start")
    parts = Upid.decode(upid)
    assert parts is not None
    assert upid.endswith(":")
    assert (parts.node, parts.type, parts.id, parts.user) == ("pve1", "qmstart", "100", sim.token.token_id)
    assert len(upid.split(":")[2]) == 8
    status = api.wait_task("pve1", upid)
    assert status["exitstatus"] == "OK"
    assert status["type"] == "qmstart"
    assert status["user"] == "startgate@pve"
    assert status["tokenid"] == "coordinator"
    assert api.data("GET", "/nodes/pve1/qemu/100/status/current")["status"] == "running"
    again = api.wait_task("pve1", api.data("POST", "/nodes/pve1/qemu/100/status/start"))
    assert again["exitstatus"] == "VM 100 already running"


def test_failed_task_exitstatus_and_task_list_filters(make_sim: SimFactory) -> None:
    """A refused pre-start fails its task with the real message; the task list filters vmid, type, errors."""
    sim = _booted(make_sim, extra_guests=[{"vmid": 101, "node": "pve1", "disks": ["local-lvm"]}])
    volid = write_hook(sim, 'echo "refusing $1 $2"; exit 3')
    sim.set_hookscript(101, volid)
    api = Api(sim)
    ok = api.wait_task("pve1", api.data("POST", "/nodes/pve1/qemu/100/status/start"))
    bad = api.wait_task("pve1", api.data("POST", "/nodes/pve1/qemu/101/status/start"))
    script = sim.snippets_dir("pve1") / "hook.sh"
    assert ok["exitstatus"] == "OK"
    assert (
        bad["exitstatus"]
        == f"hookscript error for 101 on pre-start: command '{script} 101 pre-start' failed: exit code 3"
    )
    log = [line["t"] for line in api.data("GET", f"/nodes/pve1/tasks/{bad['upid']}/log")]
    assert "refusing 101 pre-start" in log
    assert log[-1].startswith("TASK ERROR: hookscript error for 101 on pre-start:")
    by_vmid = api.data("GET", "/nodes/pve1/tasks", vmid=101)
    assert [t["upid"] for t in by_vmid] == [bad["upid"]]
    errors = api.data("GET", "/nodes/pve1/tasks", errors=1, typefilter="qmstart")
    assert [t["upid"] for t in errors] == [bad["upid"]]
    starts = api.data("GET", "/nodes/pve1/tasks", typefilter="qmstart")
    assert {t["upid"] for t in starts} == {ok["upid"], bad["upid"]}
    assert all(t["type"] == "qmstart" for t in starts)
    assert api.data("GET", "/nodes/pve1/tasks", typefilter="startall")[0]["status"] == "OK"
    r = api.call("GET", "/nodes/pve1/tasks/UPID:bogus/status")
    assert r.status_code == 400
    assert r.json()["errors"] == {"upid": "unable to parse worker upid"}


def test_injected_api_fault_answers_5xx_for_its_window(make_sim: SimFactory) -> None:
    """An injected fault makes matching calls fail with its status, only within its window."""
    sim = make_sim(scenario())
    sim.inject_api_fault(status=503, until_s=sim.clock.elapsed() + 20, path="^/cluster/")
    api = Api(sim)
    assert api.call("GET", "/cluster/resources").status_code == 503
    assert api.call("GET", "/nodes").status_code == 200
    sim.clock.sleep(21)
    assert api.call("GET", "/cluster/resources").status_code == 200
