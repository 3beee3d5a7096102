"""`startgate why VMID`: membership from the guest config, held state and what it waits for from the bus."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from startgate.bus import messages as m
from startgate.bus.broker import free_port
from startgate.cli import app
from tests.cli.conftest import Invoke, coordinator, health, held, write_config

pytestmark = pytest.mark.broker
Seed = Callable[..., None]


def test_member_not_held_with_healthy_gate(invoke: Invoke, seed: Seed) -> None:
    """A member by disk, nothing held, gate healthy: says so, exit 0."""
    seed(health(True), coordinator())
    result = invoke("why", "101")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        'VM 101 (web1) on pve1 is a member of gate "linstor": scsi0 on storage "drbdstorage". '
        "No start of it is held, and its gates are healthy: a start now goes through."
    )


def test_held_guest_waiting_for_an_unhealthy_gate(invoke: Invoke, seed: Seed) -> None:
    """Held, gate unhealthy: names the gate, since when and the probe's detail; exit 1."""
    seed(health(False), coordinator(), held(102, node="pve2", type="lxc", ha=True, attempts=3))
    result = invoke("why", "102")
    assert result.exit_code == 1
    text = result.stdout
    assert (
        'CT 102 (db) on pve2 is a member of gate "linstor": rootfs on storage "drbdstorage", tag "db".'
        in text
    )
    assert "has been held since" in text
    assert "(3 attempts, HA-managed)" in text
    assert 'waiting for gate "linstor" to become healthy (unhealthy since' in text
    assert "connection refused" in text


def test_held_guest_waiting_for_its_node_and_a_coordinator(invoke: Invoke, seed: Seed) -> None:
    """Gate healthy but the guest's node not ready, and no coordinator: both are named."""
    seed(health(True, nodes_ready=["pve2"]), held(101))
    result = invoke("why", "101")
    assert result.exit_code == 1
    assert 'node pve1 to be ready for gate "linstor"' in result.stdout
    assert "a coordinator to lead and re-issue the start" in result.stdout


def test_held_guest_with_nothing_blocking_it(invoke: Invoke, seed: Seed) -> None:
    """Everything ready: the coordinator re-issues it next, in startup order."""
    seed(health(True), coordinator(), held(101, startup_order=2))
    result = invoke("why", "101")
    assert "nothing blocks it: the coordinator re-issues it next (startup order 2)" in result.stdout


def test_failed_release_says_how_to_retry(invoke: Invoke, seed: Seed) -> None:
    """A failed release shows the reason and the release command."""
    seed(health(True), coordinator(), held(101, state="failed", reason="start failed: timeout"))
    result = invoke("why", "101")
    assert result.exit_code == 1
    assert "its release failed: start failed: timeout. `startgate release 101` tries again." in result.stdout


def test_gate_vm_and_non_member(invoke: Invoke, seed: Seed) -> None:
    """The gate's own VM is exempt; a guest on other storage is in no gate."""
    seed(health(False))
    result = invoke("why", "100")
    assert result.exit_code == 0
    assert 'is the own VM of gate "linstor", so it is never held by it.' in result.stdout
    result = invoke("why", "103")
    assert "is a member of no gate" in result.stdout


def test_member_without_hookscript_is_pointed_at_attach(invoke: Invoke, seed: Seed, config_dir: Path) -> None:
    """A member without the hookscript: its starts are not gated, with the attach command."""
    path = config_dir / "nodes/pve2/qemu-server/104.conf"
    path.write_text("name: new\nscsi0: drbdstorage:vm-104-disk-1\n")
    seed(health(True))
    result = invoke("why", "104")
    assert "It has no hookscript, so its starts are not gated (startgate attach 104)." in result.stdout


def test_why_json_validates(invoke: Invoke, seed: Seed) -> None:
    """--json carries the memberships, reasons and the held start as on the wire."""
    seed(health(False), held(102, node="pve2", type="lxc"))
    result = invoke("why", "102", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["memberships"] == [
        {
            "gate": "linstor",
            "reasons": [
                {"kind": "storage", "detail": "drbdstorage", "key": "rootfs"},
                {"kind": "tag", "detail": "db", "key": None},
            ],
        }
    ]
    assert m.HeldStart.model_validate(data["held"]).vmid == 102
    assert data["waiting_for"][0].startswith('gate "linstor" to become healthy')


def test_held_record_without_config(invoke: Invoke, seed: Seed) -> None:
    """A held start whose guest config is gone is still explained."""
    seed(health(True), coordinator(), held(555))
    result = invoke("why", "555")
    assert result.exit_code == 1
    assert result.stdout.startswith("VM 555 has no config on any node (destroyed?)")


@pytest.mark.parametrize(
    ("vmid", "message"), [("555", "unknown VMID 555"), ("7", "out of range"), ("x", "not a number")]
)
def test_why_bad_vmid_exits_2(invoke: Invoke, vmid: str, message: str) -> None:
    """Unknown, out of range, not a number: exit 2."""
    result = invoke("why", vmid)
    assert result.exit_code == 2
    assert message in result.stderr


def test_why_without_broker_still_explains_membership(tmp_path: Path, config_dir: Path) -> None:
    """No broker: membership from the config, held state unknown, exit 1."""
    cfg = write_config(tmp_path / "sg.toml", [f"mqtt://127.0.0.1:{free_port()}"], "p", config_dir)
    result = CliRunner().invoke(app, ["--config", str(cfg), "why", "101"])
    assert result.exit_code == 1
    assert 'member of gate "linstor": scsi0 on storage "drbdstorage".' in result.stdout
    assert "Whether a start of it is held is unknown: no broker answered" in result.stdout
