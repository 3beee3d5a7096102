"""Guest starts as qemu-server and pve-container run them: hook order, lock, checks, stops."""

from __future__ import annotations

from startgate.sim.cluster import SimCluster
from tests.sim.conftest import Api, SimFactory, hook_log, scenario, write_hook

NO_CTRL = "could not connect to any LINSTOR controller and no local DRBD device exists for"


def _sim(make_sim: SimFactory) -> SimCluster:
    sim = make_sim(
        scenario(
            extra_guests=[
                {"vmid": 101, "node": "pve1", "disks": ["drbdstorage"]},
                {"vmid": 105, "type": "lxc", "node": "pve1", "disks": ["drbdstorage"]},
                {"vmid": 106, "node": "pve1", "disks": ["local-lvm"]},
            ]
        )
    )
    sim.boot_all()
    assert sim.clock.wait_for(lambda: sim.nodes["pve1"].startall_done, 60)
    return sim


def test_vm_hook_runs_before_volume_activation(make_sim: SimFactory) -> None:
    """A VM's pre-start hook runs first: a refusing hook fails the start before LINSTOR is asked."""
    sim = _sim(make_sim)
    log = hook_log(sim)
    sim.set_hookscript(101, write_hook(sim, f'echo "$1 $2" >> {log}; exit 1'))
    api = Api(sim)
    st = api.wait_task("pve1", api.data("POST", "/nodes/pve1/qemu/101/status/start"))
    assert st["exitstatus"].startswith("hookscript error for 101 on pre-start: command '")
    assert NO_CTRL not in st["exitstatus"]
    assert log.read_text() == "101 pre-start\n"
    sim.set_hookscript(101, write_hook(sim, f'echo "$1 $2" >> {log}; exit 0', "ok.sh"))
    st = api.wait_task("pve1", api.data("POST", "/nodes/pve1/qemu/101/status/start"))
    assert st["exitstatus"] == f"{NO_CTRL} vm-101-disk-0"
    assert log.read_text() == "101 pre-start\n101 pre-start\n"


def test_container_activates_volumes_before_its_hook(make_sim: SimFactory) -> None:
    """A CT on LINSTOR fails in volume activation; its hook never runs (pve-container order)."""
    sim = _sim(make_sim)
    log = hook_log(sim)
    sim.set_hookscript(105, write_hook(sim, f'echo "$1 $2" >> {log}; exit 0'))
    api = Api(sim)
    st = api.wait_task("pve1", api.data("POST", "/nodes/pve1/lxc/105/status/start"))
    assert st["exitstatus"] == f"{NO_CTRL} vm-105-disk-0"
    assert not log.exists()
    assert [e.kind for e in sim.events.of_kind("start_failed", vmid=105)] == ["start_failed"]


def test_hook_phases_argv_stdin_and_task_log(make_sim: SimFactory) -> None:
    """pre-start, post-start, pre-stop, post-stop run `<script> <vmid> <phase>` with stdin closed."""
    sim = _sim(make_sim)
    log = hook_log(sim)
    body = (
        'if read -r line; then echo "stdin had data"; fi; '
        f'echo "$1 $2 ${{PVE_MIGRATED_FROM-unset}}" >> {log}; echo "hello from $2"'
    )
    sim.set_hookscript(106, write_hook(sim, body))
    api = Api(sim)
    st = api.wait_task("pve1", api.data("POST", "/nodes/pve1/qemu/106/status/start"))
    assert st["exitstatus"] == "OK"
    lines = [x["t"] for x in api.data("GET", f"/nodes/pve1/tasks/{st['upid']}/log")]
    assert "hello from pre-start" in lines
    assert "hello from post-start" in lines
    assert "stdin had data" not in lines
    stop = api.wait_task("pve1", api.data("POST", "/nodes/pve1/qemu/106/status/stop"))
    assert stop["exitstatus"] == "OK"
    assert log.read_text().splitlines() == [
        "106 pre-start ",
        "106 post-start ",
        "106 pre-stop ",
        "106 post-stop ",
    ]


def test_hookscript_checks_use_the_real_messages(make_sim: SimFactory) -> None:
    """A missing or non-executable snippet fails pre-start with check_hookscript's words."""
    sim = _sim(make_sim)
    api = Api(sim)
    sim.set_hookscript(106, "local:snippets/nothere.sh")
    st = api.wait_task("pve1", api.data("POST", "/nodes/pve1/qemu/106/status/start"))
    assert (
        st["exitstatus"]
        == "hookscript error for 106 on pre-start: script 'local:snippets/nothere.sh' does not exist"
    )
    sim.install_snippet("pve1", "noexec.sh", "#!/bin/sh\nexit 0\n", mode=0o644)
    sim.set_hookscript(106, "local:snippets/noexec.sh")
    st = api.wait_task("pve1", api.data("POST", "/nodes/pve1/qemu/106/status/start"))
    assert (
        st["exitstatus"]
        == "hookscript error for 106 on pre-start: script 'local:snippets/noexec.sh' is not executable"
    )
    sim.set_hookscript(106, "local-lvm:vm-106-disk-9")
    st = api.wait_task("pve1", api.data("POST", "/nodes/pve1/qemu/106/status/start"))
    assert (
        st["exitstatus"]
        == "hookscript error for 106 on pre-start: 'local-lvm:vm-106-disk-9' is not in the snippets directory"
    )


def test_second_start_waits_for_the_config_lock_then_times_out(make_sim: SimFactory) -> None:
    """While a hook holds the config lock, another start fails after 10 s with the lock-timeout message."""
    sim = _sim(make_sim)
    sim.set_hookscript(106, write_hook(sim, "sleep 2; exit 1"))  # 2 s real = 200 simulated s
    api = Api(sim)
    first = api.data("POST", "/nodes/pve1/qemu/106/status/start")
    sim.clock.sleep(2)
    t0 = sim.clock.elapsed()
    second = api.wait_task("pve1", api.data("POST", "/nodes/pve1/qemu/106/status/start"))
    assert second["exitstatus"] == "can't lock file '/var/lock/qemu-server/lock-106.conf' - got timeout"
    assert sim.clock.elapsed() - t0 >= 10
    assert api.data("GET", f"/nodes/pve1/tasks/{first}/status")["status"] == "running"


def test_plugin_uses_local_device_when_controller_is_down(make_sim: SimFactory) -> None:
    """linstor-proxmox 8.3.0: with a kept resource up locally, activation succeeds without a controller."""
    s = scenario(extra_guests=[{"vmid": 101, "node": "pve1", "disks": ["drbdstorage"]}])
    storages = [
        st.model_copy(update={"keep_res": ["vm-101-disk-0"]}) if st.type == "drbd" else st
        for st in s.storages
    ]
    sim = make_sim(s.model_copy(update={"storages": storages}))
    sim.boot_all()
    assert sim.clock.wait_for(lambda: "vm-101-disk-0" in sim.nodes["pve1"].local_drbd, 60)
    api = Api(sim)
    st = api.wait_task("pve1", api.data("POST", "/nodes/pve1/qemu/101/status/start"))
    assert st["exitstatus"] == "OK"
    lines = [x["t"] for x in api.data("GET", f"/nodes/pve1/tasks/{st['upid']}/log")]
    assert "LINSTOR controller unreachable, using existing local DRBD device for vm-101-disk-0" in lines
