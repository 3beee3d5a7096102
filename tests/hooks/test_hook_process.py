"""The hookscript run exactly as Proxmox runs it, against real-shaped configs and a real Mosquitto."""

from __future__ import annotations

import time

import pytest

from startgate.bus import messages
from startgate.bus.broker import MosquittoProcess
from startgate.hooks.testing import FakeLinstor
from tests.hooks.conftest import Node, Watcher, decoded, health, publish, retained

pytestmark = pytest.mark.broker


def events(watch: Watcher, node: Node, vmid: int, count: int = 1) -> list[messages.GuestEvent]:
    """The guest events of `vmid` on the bus, validated by the pydantic model."""
    topic = node.topics.guest_event(vmid)
    found = watch.wait_for(lambda t, _p: t == topic, count)
    out = [decoded(node, t, p) for t, p in found]
    assert all(isinstance(e, messages.GuestEvent) for e in out)
    return out  # type: ignore[return-value]  # checked just above


def held(mosquitto: MosquittoProcess, node: Node, vmid: int) -> messages.HeldStart | None:
    """The retained held record of `vmid`, validated, or None."""
    payload = retained(mosquitto.url, node.topics.held(vmid))
    if payload is None:
        return None
    msg = decoded(node, node.topics.held(vmid), payload)
    assert isinstance(msg, messages.HeldStart)
    return msg


def test_non_member_is_allowed_silently_on_the_bus(
    node: Node, watch: Watcher, controller: FakeLinstor
) -> None:
    """VM 102 (its only drbdstorage disk is in a snapshot and unused) starts at once; nothing is published."""
    controller.status = 503
    r = node.run(102)
    assert (r.code, r.stderr) == (0, "")
    assert r.stdout == "startgate: VM 102 may start: not a member of any gate\n"
    for phase in ("post-start", "pre-stop", "post-stop"):
        r = node.run(102, phase)
        assert (r.code, r.stdout, r.stderr) == (0, "", "")
    assert node.run(101, "post-start").code == 0  # a member's event, as a marker that all went out
    events(watch, node, 101)
    assert watch.matching(lambda t, _p: "/102/" in t) == []
    assert controller.requests == []


def test_fresh_retained_health_is_believed_without_checking(
    node: Node, watch: Watcher, mosquitto: MosquittoProcess, controller: FakeLinstor
) -> None:
    """A fresh healthy record allows; a fresh unhealthy one holds; the controller is never asked."""
    publish(mosquitto.url, health(node, healthy=True, age_s=2))
    r = node.run(101)
    assert r.code == 0, r
    assert r.stdout.startswith('startgate: VM 101 may start: gate "linstor" is healthy')
    publish(mosquitto.url, health(node, healthy=False, age_s=1))
    r = node.run(101)
    assert r.code == 1, r
    assert "no answer from controller" in r.stdout
    assert controller.requests == []


def test_stale_retained_health_falls_back_to_the_gates_own_check(
    node: Node, mosquitto: MosquittoProcess, controller: FakeLinstor
) -> None:
    """A record older than health_max_age_s is not believed: the controller's /health decides."""
    publish(mosquitto.url, health(node, healthy=True, age_s=60))
    controller.status = 503
    r = node.run(101)
    assert r.code == 1
    assert f"HTTP 503 from 127.0.0.1:{controller.port}" in r.stdout
    controller.status = 200
    assert node.run(101).code == 0
    assert controller.requests == ["/health", "/health"]


def test_node_not_ready_holds_a_linstor_member(node: Node, mosquitto: MosquittoProcess) -> None:
    """A healthy controller whose record does not list this node as ready still holds the start."""
    publish(mosquitto.url, health(node, healthy=True, nodes_ready=["pve2"]))
    r = node.run(101)
    assert r.code == 1
    assert "node pve1 is not ready" in r.stdout
    publish(mosquitto.url, health(node, healthy=True, nodes_ready=["pve1", "pve2"]))
    assert node.run(101).code == 0


def test_hold_prints_one_line_and_publishes_the_held_record_and_event(
    node: Node, watch: Watcher, mosquitto: MosquittoProcess, controller: FakeLinstor
) -> None:
    """The hold path: exit 1, one task-log line, a retained HeldStart and a GuestEvent; attempts grow."""
    node.write_config([mosquitto.url], ["http://127.0.0.1:9"])  # nothing listens on port 9
    r = node.run(101)
    assert r.code == 1
    assert r.stderr == ""
    assert r.stdout == (
        'startgate: holding start of VM 101 until gate "linstor" is healthy '
        "(connection refused by 127.0.0.1:9); it will be started automatically\n"
    )
    first = held(mosquitto, node, 101)
    assert first is not None
    assert (first.vmid, first.node, first.type, first.gates, first.attempts) == (
        101,
        "pve1",
        "qemu",
        ["linstor"],
        1,
    )
    assert (first.ha, first.name, first.startup_order, first.state, first.source) == (
        True,
        "web1",
        2,
        "held",
        "hook",
    )
    assert first.reason == "linstor: connection refused by 127.0.0.1:9"
    (event,) = events(watch, node, 101)
    assert (event.decision, event.gates, event.ha) == ("hold", ["linstor"], True)

    assert node.run(101).code == 1
    second = held(mosquitto, node, 101)
    assert second is not None
    assert second.attempts == 2
    assert second.first_held == first.first_held
    assert second.last_held >= first.last_held
    assert second.event_id != first.event_id


def test_migration_target_and_locked_config_are_allowed(node: Node, controller: FakeLinstor) -> None:
    """PVE_MIGRATED_FROM (non-empty) and `lock:` allow at once, even with the gate down."""
    controller.status = 503
    r = node.run(101, PVE_MIGRATED_FROM="pve2")
    assert (r.code, r.stdout) == (0, "startgate: VM 101 may start: live-migration target (from pve2)\n")
    assert node.run(101, PVE_MIGRATED_FROM="").code == 1  # set but empty: a normal start
    r = node.run(105)
    assert (r.code, r.stdout) == (0, "startgate: VM 105 may start: its config is locked (backup)\n")
    assert controller.requests == ["/health"]


def test_migration_target_is_reported_from_the_source_nodes_config(
    node: Node, watch: Watcher, controller: FakeLinstor
) -> None:
    """During a live migration the config is still in the source node's folder: membership is read there."""
    controller.status = 503
    source = node.pve / "nodes" / "pve2" / "qemu-server"
    source.mkdir(parents=True)
    for vmid in (101, 102):
        node.guest_config(vmid).rename(source / f"{vmid}.conf")
    assert node.run(101, PVE_MIGRATED_FROM="pve2").code == 0
    assert node.run(102, PVE_MIGRATED_FROM="pve2").code == 0
    assert node.run(103, PVE_MIGRATED_FROM="../../etc").code == 0  # not a node name: not read, reported
    (event,) = events(watch, node, 101)
    assert (event.decision, event.gates, event.reason) == (
        "allow",
        ["linstor"],
        "live-migration target (from pve2)",
    )
    events(watch, node, 103)
    assert watch.matching(lambda t, _p: "/102/" in t) == []
    assert controller.requests == []


def test_a_release_ticket_is_honoured_once(
    node: Node, watch: Watcher, mosquitto: MosquittoProcess, controller: FakeLinstor
) -> None:
    """A valid ticket allows one start; the same ticket again is not honoured; an expired one never."""
    controller.status = 503
    now = time.time()
    ticket = messages.Ticket(time=now, vmid=101, expires=now + 60, requested_by="root@pam")
    publish(mosquitto.url, (node.topics.ticket(101), ticket.to_json(), True))
    r = node.run(101)
    assert r.code == 0
    assert f"released by root@pam with one-shot ticket {ticket.event_id}" in r.stdout
    (event,) = events(watch, node, 101)
    assert event.decision == "allow"
    assert ticket.event_id in event.reason
    assert event.ticket == ticket.event_id
    assert node.run(101).code == 1  # same ticket: used

    old = messages.Ticket(time=now - 120, vmid=101, expires=now - 60)
    publish(mosquitto.url, (node.topics.ticket(101), old.to_json(), True))
    assert node.run(101).code == 1


@pytest.mark.parametrize(
    ("vmid", "label", "code"),
    [
        (100, "VM 100", 0),  # the gate's own VM is exempt
        (103, "VM 103", 1),  # a drbdstorage disk in [PENDING]
        (104, "VM 104", 0),  # only unused disks on drbdstorage
        (106, "VM 106", 1),  # tag Needs-LINSTOR
        (150, "VM 150", 1),  # VMID listed
        (201, "CT 201", 1),  # container rootfs
        (202, "CT 202", 1),  # container mount point
        (203, "CT 203", 1),  # container mount point in [pve:pending]
    ],
)
def test_membership_rules_on_real_shaped_configs(
    node: Node, controller: FakeLinstor, vmid: int, label: str, code: int
) -> None:
    """Each fixture is held or allowed by the membership rule, and the line names the guest right."""
    controller.status = 503
    r = node.run(vmid)
    assert r.code == code, r
    assert r.stdout.startswith(
        f"startgate: holding start of {label}" if code else f"startgate: {label} may start"
    )
    assert r.stdout.count("\n") == 1


def test_container_held_record(node: Node, mosquitto: MosquittoProcess, controller: FakeLinstor) -> None:
    """CT 201's held record says lxc, and not HA-managed (its HA state is `ignored`)."""
    controller.status = 503
    assert node.run(201).code == 1
    rec = held(mosquitto, node, 201)
    assert rec is not None
    assert (rec.type, rec.ha, rec.name, rec.startup_order) == ("lxc", False, "dns1", 3)


@pytest.mark.parametrize("phase", ["post-start", "pre-stop", "post-stop"])
def test_other_phases_report_and_never_block(
    node: Node, watch: Watcher, controller: FakeLinstor, phase: str
) -> None:
    """post-start, pre-stop and post-stop publish their event and exit 0 silently, gate down or not."""
    controller.status = 503
    r = node.run(101, phase)
    assert (r.code, r.stdout, r.stderr) == (0, "", "")
    (event,) = events(watch, node, 101)
    assert (event.phase, event.decision) == (phase, None)


def test_config_changes_are_picked_up_through_the_cache(node: Node, controller: FakeLinstor) -> None:
    """The validated cache is rebuilt when startgate.toml changes (here: the gate loses its storage)."""
    controller.status = 503
    assert node.run(202).code == 1
    assert list(node.cache_dir.glob("config-*.cache"))
    text = node.config.read_text().replace('storages = ["drbdstorage"]', 'storages = ["other"]')
    node.config.write_text(text)
    assert node.run(202).code == 0
