"""`startgate doctor` on fixture trees: a good setup, then each fault on its own."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from startgate.bus.broker import MosquittoProcess, free_port
from startgate.bus.mqtt import ClientSettings
from startgate.bus.topics import Topics
from startgate.cli import app
from startgate.commands.testing import publish_retained
from startgate.config import Config, load
from startgate.doctor.testing import FakePveApi, grants_on_root
from tests.cli import doctor_tree
from tests.cli.conftest import node

pytestmark = pytest.mark.broker
TOKEN = "startgate@pve!coordinator"
SAT_RESET = "[Service]\nExecStart=\nExecStart=/usr/share/linstor-server/bin/Satellite "
NEEDED = ("VM.Audit", "VM.PowerMgmt", "Sys.Audit", "Sys.Console")


class Doctor:
    """A good setup plus the fake API, and a way to run doctor on it."""

    def __init__(self, setup: doctor_tree.Setup, api: FakePveApi, bin_dir: Path) -> None:
        self.setup = setup
        self.api = api
        self.bin_dir = bin_dir

    def config(self) -> Config:
        """The setup's startgate config, loaded."""
        return load(self.setup.cfg)

    def run(self, *args: str, env: dict[str, str] | None = None) -> tuple[Result, list[dict[str, Any]]]:
        """Run `doctor --json --root <root>`; return the result and the checks."""
        result = CliRunner().invoke(
            app,
            ["--config", str(self.setup.cfg), "doctor", "--json", "--root", str(self.setup.root), *args],
            env={"PATH": doctor_tree.path_with(self.bin_dir), **(env or {})},
        )
        assert result.exit_code in (0, 1), result.output
        data = json.loads(result.stdout)
        assert data["ok"] is (result.exit_code == 0)
        return result, data["checks"]

    def problems(self, **kw: Any) -> set[tuple[str, str]]:
        """The (check, status) of every finding that is not ok."""
        _result, checks = self.run(**kw)
        return {(c["check"], c["status"]) for c in checks if c["status"] != "ok"}

    def finding(self, check: str, **kw: Any) -> dict[str, Any]:
        """The first non-ok finding of `check` (or the first of any status)."""
        _result, checks = self.run(**kw)
        matching = [c for c in checks if c["check"] == check]
        assert matching, f"no {check} finding in {checks}"
        return next((c for c in matching if c["status"] != "ok"), matching[0])


@pytest.fixture
def doc(tmp_path: Path, session_broker: MosquittoProcess, fast: ClientSettings) -> Iterator[Doctor]:
    """The good setup, its agents' status retained on the shared broker, and the fake API."""
    secret = str(uuid.uuid4())
    prefix = f"t{uuid.uuid4().hex[:12]}"
    with FakePveApi({TOKEN: (secret, grants_on_root(*NEEDED))}) as api:
        setup = doctor_tree.build(tmp_path, [session_broker.url], prefix, api.url, secret)
        publish_retained(session_broker.url, Topics(prefix, "pve1"), fast, [node("pve1"), node("pve2")])
        doctor_tree.fake_systemctl(tmp_path / "bin")
        yield Doctor(setup, api, tmp_path / "bin")


def test_good_setup_is_all_ok(doc: Doctor) -> None:
    """Every check passes on the good setup: exit 0, no warn or fail."""
    result, checks = doc.run()
    assert result.exit_code == 0, result.output
    assert [c for c in checks if c["status"] != "ok"] == []
    names = {c["check"] for c in checks}
    expected = {"hookscript", "hook file", "node pve1", "node pve2", "gate linstor VM", "linstor-proxmox"}
    expected |= {"drbd.service", "keep-res", "storage drbdstorage", "api token", "privileges"}
    expected |= {f"broker {doc.config().bus.brokers[0]}"}
    expected |= {"startgate-agent.service", "startgate-coordinator.service"}
    assert expected <= names
    assert doc.api.requests == ["/api2/json/access/permissions"]


def test_text_output_has_a_line_per_check_and_totals(doc: Doctor) -> None:
    """Without --json: `ok  check  message` lines and a totals line."""
    result = CliRunner().invoke(
        app,
        ["--config", str(doc.setup.cfg), "doctor", "--root", str(doc.setup.root)],
        env={"PATH": doctor_tree.path_with(doc.bin_dir)},
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(ln.startswith("ok    keep-res") and "'vm-100-disk'" in ln for ln in lines)
    assert lines[-1].endswith("0 warn, 0 fail")


# -- guests and hooks --------------------------------------------------------------------------


def test_member_without_hookscript_fails_with_attach_fix(doc: Doctor) -> None:
    """A member guest without the hookscript: fail, fix `startgate attach <vmid>`."""
    doc.setup.guest(104, "pve2", "qemu-server", "name: new\nscsi0: drbdstorage:vm-104-disk-1,size=8G\n")
    assert doc.problems() == {("hookscript 104", "fail")}
    assert doc.finding("hookscript 104")["fix"] == "startgate attach 104"


def test_member_with_another_hookscript_is_reported_not_overwritten(doc: Doctor) -> None:
    """Another hookscript on a member: warn, naming it; the config file is untouched."""
    text = "name: x\nscsi0: drbdstorage:vm-104-disk-1\nhookscript: local:snippets/mine.pl\n"
    doc.setup.guest(104, "pve2", "qemu-server", text)
    assert doc.problems() == {("hookscript 104", "warn")}
    f = doc.finding("hookscript 104")
    assert "local:snippets/mine.pl" in f["message"]
    assert "startgate attach --replace 104" in f["fix"]
    assert (doc.setup.config_dir / "nodes/pve2/qemu-server/104.conf").read_text() == text


def test_local_hook_file_missing_or_not_executable_fails(doc: Doctor) -> None:
    """This node's hook file: missing -> fail (install), not executable -> fail (chmod)."""
    hook = doc.setup.root / "var/lib/vz/snippets/startgate-hook"
    hook.chmod(0o644)
    assert doc.problems() == {("hook file", "fail")}
    assert doc.finding("hook file")["fix"].startswith("chmod 755")
    hook.unlink()
    assert doc.finding("hook file")["fix"] == "startgate install"


def test_node_agent_reporting_a_missing_hook_fails(
    doc: Doctor, session_broker: MosquittoProcess, fast: ClientSettings
) -> None:
    """Node pve2's agent says its hook file is missing: fail for node pve2."""
    prefix = doc.config().bus.topic_prefix
    gone = {"path": "/var/lib/vz/snippets/startgate-hook", "exists": False, "executable": False}
    publish_retained(session_broker.url, Topics(prefix, "pve1"), fast, [node("pve2", hook=gone)])
    assert doc.problems() == {("node pve2", "fail")}
    assert doc.finding("node pve2")["fix"] == "on pve2: startgate install"


def test_node_without_agent_status_warns(doc: Doctor) -> None:
    """A node directory with no agent status on the bus: warn."""
    doc.setup.guest(105, "pve3", "qemu-server", "name: y\nscsi0: local-lvm:vm-105-disk-0\n")
    assert doc.problems() == {("node pve3", "warn")}


# -- the gate's own VM -------------------------------------------------------------------------


def test_gate_vm_without_config_fails(doc: Doctor) -> None:
    """gates[0].vmid names a VM no node has: fail."""
    (doc.setup.config_dir / "nodes/pve1/qemu-server/100.conf").unlink()
    assert doc.problems() == {("gate linstor VM", "fail")}


def test_gate_vm_not_ha_warns_and_ha_stopped_fails(doc: Doctor) -> None:
    """Not in ha/resources.cfg: warn (ha-manager add); state stopped: fail (ha-manager set)."""
    ha = doc.setup.config_dir / "ha/resources.cfg"
    ha.write_text("vm: 101\n\tstate started\n")
    assert doc.problems() == {("gate linstor VM", "warn")}
    assert doc.finding("gate linstor VM")["fix"] == "ha-manager add vm:100 --state started"
    ha.write_text("vm: 100\n\tstate stopped\n\nvm: 101\n\tstate started\n")
    assert doc.problems() == {("gate linstor VM", "fail")}
    assert doc.finding("gate linstor VM")["fix"] == "ha-manager set vm:100 --state started"


def test_gate_vm_on_local_storage_needs_no_drbd_checks(doc: Doctor) -> None:
    """With the controller VM's disk on local-lvm, drbd.service and keep-res are not needed."""
    doc.setup.guest(100, "pve1", "qemu-server", "name: c\nscsi0: local-lvm:vm-100-disk-0\n")
    (doc.setup.root / "etc/systemd/system/multi-user.target.wants/drbd.service").unlink()
    (doc.setup.root / "etc/systemd/system/linstor-satellite.service.d/keep-res.conf").unlink()
    result, checks = doc.run()
    assert result.exit_code == 0
    names = {c["check"] for c in checks}
    assert "keep-res" not in names
    assert "drbd.service" not in names


def test_drbd_service_not_enabled_fails_unless_the_resource_target_is(doc: Doctor) -> None:
    """No drbd.service: fail; drbd@vm\\x2d100\\x2ddisk\\x2d1.target enabled instead: ok."""
    wants = doc.setup.root / "etc/systemd/system/multi-user.target.wants"
    (wants / "drbd.service").unlink()
    assert doc.problems() == {("drbd.service", "fail")}
    assert doc.finding("drbd.service")["fix"].startswith(
        "systemctl enable drbd@vm\\x2d100\\x2ddisk\\x2d1.target"
    )
    (wants / "drbd@vm\\x2d100\\x2ddisk\\x2d1.target").symlink_to("/lib/systemd/system/drbd@.target")
    assert doc.problems() == set()


def test_keep_res_missing_fails(doc: Doctor) -> None:
    """No LS_KEEP_RES and no --keep-res on a satellite older than 1.33: fail with the drop-in to add."""
    (doc.setup.root / "etc/systemd/system/linstor-satellite.service.d/keep-res.conf").unlink()
    assert doc.problems() == {("keep-res", "fail")}
    assert doc.finding("keep-res")["fix"] == (
        "systemctl edit linstor-satellite.service: [Service] Environment=LS_KEEP_RES=vm-100-disk-1"
    )


@pytest.mark.parametrize(
    ("dropin", "status"),
    [
        ("[Service]\nEnvironment=LS_KEEP_RES=linstor_db\n", "fail"),  # keeps another resource only
        ('[Service]\nEnvironment="LS_KEEP_RES=vm-10[0-9]-disk" FOO=1\n', "ok"),
        ("[Service]\nEnvironment=LS_KEEP_RES=(unclosed\n", "fail"),  # not a regex
        ("[Service]\nExecStart=\nExecStart=/usr/share/linstor-server/bin/Satellite -k vm-100\n", "ok"),
        (
            f"{SAT_RESET}--keep-res=^vm-100-disk-1\\.res$\n",
            "ok",
        ),
        (
            f"{SAT_RESET}--keep-res=^vm-100-disk-1$\n",
            "fail",
        ),
        (
            "[Service]\nEnvironment=LS_KEEP_RES=vm-100\nEnvironment=\n",
            "fail",
        ),  # reset by the empty assignment
    ],
)
def test_keep_res_regex_is_tested_against_the_vm_resource_names(
    doc: Doctor, dropin: str, status: str
) -> None:
    """The regex from the unit and its drop-ins is searched in `<resource>.res`, as the satellite does."""
    doc.setup.write("etc/systemd/system/linstor-satellite.service.d/keep-res.conf", dropin)
    assert doc.finding("keep-res")["status"] == status


def test_keep_res_in_an_environment_file_counts(doc: Doctor) -> None:
    """LS_KEEP_RES from an EnvironmentFile= of the unit is read too."""
    doc.setup.write(
        "etc/systemd/system/linstor-satellite.service.d/keep-res.conf",
        "[Service]\nEnvironmentFile=-/etc/default/linstor-satellite\n",
    )
    doc.setup.write("etc/default/linstor-satellite", 'LS_KEEP_RES="vm-100-disk-1"\n')
    assert doc.finding("keep-res")["status"] == "ok"


def test_keep_res_not_needed_from_linstor_1_33(doc: Doctor) -> None:
    """linstor-satellite 1.33 keeps known .res files: no regex needed."""
    (doc.setup.root / "etc/systemd/system/linstor-satellite.service.d/keep-res.conf").unlink()
    status = doc.setup.root / "var/lib/dpkg/status"
    status.write_text(status.read_text().replace("Version: 1.31.2-1", "Version: 1.33.1-1"))
    assert doc.problems() == set()


def test_old_plugin_cannot_start_the_controller_vm(doc: Doctor) -> None:
    """linstor-proxmox before 8.3.0 needs the controller to activate the controller VM's disks: fail."""
    status = doc.setup.root / "var/lib/dpkg/status"
    status.write_text(status.read_text().replace("Version: 8.3.0-1", "Version: 8.2.1-1"))
    assert doc.problems() == {("linstor-proxmox", "fail")}


# -- storage.cfg -------------------------------------------------------------------------------


def _storage(doc: Doctor, old: str, new: str) -> None:
    path = doc.setup.config_dir / "storage.cfg"
    path.write_text(path.read_text().replace(old, new))


def test_gated_storage_missing_fails(doc: Doctor) -> None:
    """A gate's storage that storage.cfg does not define: fail."""
    _storage(doc, "drbd: drbdstorage", "drbd: otherdrbd")
    problems = doc.problems()
    assert ("storage drbdstorage", "fail") in problems


def test_gated_storage_of_another_type_warns(doc: Doctor) -> None:
    """A LINSTOR gate listing an lvmthin storage: warn (and VM 103 on it becomes a member without hook)."""
    text = doc.setup.cfg.read_text().replace(
        'storages = ["drbdstorage"]', 'storages = ["drbdstorage", "local-lvm"]'
    )
    doc.setup.cfg.write_text(text)
    assert doc.problems() == {("storage local-lvm", "warn"), ("hookscript 103", "fail")}


def test_controller_list_differing_from_the_gate_urls_warns(doc: Doctor) -> None:
    """storage.cfg's controller list and the gate's urls name different hosts: warn, with the urls to set."""
    _storage(doc, "controller 10.43.7.254", "controller 10.43.7.1,10.43.7.2")
    assert doc.problems() == {("storage drbdstorage", "warn")}
    assert doc.finding("storage drbdstorage")["fix"].startswith(
        'set gates[0].check.urls = ["http://10.43.7.1:3370", "http://10.43.7.2:3370"]'
    )


def test_controllervm_line_is_reported_as_without_effect(doc: Doctor) -> None:
    """`controllervm 100` with plugin 8.3: warn that it has no effect since 6.0."""
    _storage(doc, "\tresourcegroup pve-rg\n", "\tresourcegroup pve-rg\n\tcontrollervm 100\n")
    assert doc.problems() == {("storage drbdstorage", "warn")}
    f = doc.finding("storage drbdstorage")
    assert "no effect since linstor-proxmox 6.0 (installed: 8.3.0-1)" in f["message"]


# -- API token ---------------------------------------------------------------------------------


def test_wrong_token_secret_fails(doc: Doctor) -> None:
    """The API answers 401: fail naming the token."""
    doc.setup.token_file.write_text("not-the-secret\n")
    assert doc.problems() == {("api token", "fail")}
    assert TOKEN in doc.finding("api token")["message"]


def test_token_secret_file_readable_by_others_fails(doc: Doctor) -> None:
    """A secret file mode 644 is refused before any request."""
    doc.setup.token_file.chmod(0o644)
    assert doc.problems() == {("api token", "fail")}
    assert doc.api.requests == []


def test_missing_privilege_fails_and_suggests_the_role(doc: Doctor) -> None:
    """No VM.PowerMgmt: fail, with the pveum commands for exactly the needed privileges."""
    doc.api.tokens[TOKEN] = (doc.api.tokens[TOKEN][0], grants_on_root("VM.Audit", "Sys.Audit", "Sys.Console"))
    assert doc.problems() == {("privileges", "fail")}
    f = doc.finding("privileges")
    assert "VM.PowerMgmt" in f["message"]
    assert f["fix"] == (
        'pveum role add StartGate --privs "VM.Audit,VM.PowerMgmt,Sys.Audit,Sys.Console"; '
        "pveum acl modify / --roles StartGate --users startgate@pve --tokens 'startgate@pve!coordinator'"
    )


def test_vm_privileges_on_vms_path_count(doc: Doctor) -> None:
    """VM.* granted on /vms and Sys.* on /: all fine."""
    grants = {"/": {"Sys.Audit": 1, "Sys.Console": 1}, "/vms": {"VM.Audit": 1, "VM.PowerMgmt": 1}}
    doc.api.tokens[TOKEN] = (doc.api.tokens[TOKEN][0], grants)
    assert doc.problems() == set()


def test_unpropagated_root_grant_does_not_reach_the_guests(doc: Doctor) -> None:
    """VM.* on / without propagation does not cover /vms/<id>: fail."""
    grants = {"/": {"VM.Audit": 0, "VM.PowerMgmt": 0, "Sys.Audit": 1, "Sys.Console": 1}}
    doc.api.tokens[TOKEN] = (doc.api.tokens[TOKEN][0], grants)
    assert doc.problems() == {("privileges", "fail")}


def test_more_privileges_than_needed_warn(doc: Doctor) -> None:
    """Extra privileges (Datastore.Allocate, VM.Allocate): warn, naming them."""
    doc.api.tokens[TOKEN] = (
        doc.api.tokens[TOKEN][0],
        grants_on_root(*NEEDED, "VM.Allocate", "Datastore.Allocate"),
    )
    assert doc.problems() == {("privileges", "warn")}
    assert "Datastore.Allocate, VM.Allocate" in doc.finding("privileges")["message"]


def test_no_sys_console_warns_when_gated_guests_are_ha_managed(doc: Doctor) -> None:
    """Without Sys.Console, HA-managed member VM 101 could stay in `error`: warn."""
    doc.api.tokens[TOKEN] = (doc.api.tokens[TOKEN][0], grants_on_root(*NEEDED[:3]))
    assert doc.problems() == {("privileges", "warn")}
    (doc.setup.config_dir / "ha/resources.cfg").write_text("vm: 100\n\tstate started\n")
    assert doc.problems() == set()


def test_api_unreachable_fails(doc: Doctor) -> None:
    """Nothing listens at proxmox.url: fail with the URL."""
    text = doc.setup.cfg.read_text().replace(doc.api.url, "http://127.0.0.1:9")
    doc.setup.cfg.write_text(text)
    assert doc.problems() == {("api token", "fail")}
    assert "cannot reach the API" in doc.finding("api token")["message"]


# -- bus and units -----------------------------------------------------------------------------


def test_unit_not_active_fails(doc: Doctor) -> None:
    """systemctl says inactive: fail with `systemctl enable --now`."""
    problems = doc.problems(env={"FAKE_UNIT_STATE": "inactive"})
    assert problems == {("startgate-agent.service", "fail"), ("startgate-coordinator.service", "fail")}
    f = doc.finding("startgate-agent.service", env={"FAKE_UNIT_STATE": "failed"})
    assert f["fix"].startswith("systemctl enable --now startgate-agent.service")


def test_no_broker_fails_the_broker_and_leaves_agents_unchecked(doc: Doctor) -> None:
    """The only broker is down: broker fail, node agents warn (unchecked)."""
    url = f"mqtt://127.0.0.1:{free_port()}"
    old = doc.config().bus.brokers[0]
    doc.setup.cfg.write_text(doc.setup.cfg.read_text().replace(old, url))
    assert doc.problems() == {(f"broker {url}", "fail"), ("node agents", "warn")}


def test_doctor_without_config_exits_2(tmp_path: Path) -> None:
    """No config file: exit 2."""
    result = CliRunner().invoke(app, ["--config", str(tmp_path / "none.toml"), "doctor"])
    assert result.exit_code == 2
