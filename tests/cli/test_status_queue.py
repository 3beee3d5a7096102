"""`startgate status` and `startgate queue` against retained state on a real Mosquitto."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from startgate.bus import messages as m
from startgate.bus.broker import MosquittoProcess, free_port
from startgate.bus.mqtt import ClientSettings, Publisher
from startgate.bus.topics import Topics
from startgate.cli import app
from startgate.commands.testing import publish_retained
from tests.cli.conftest import Invoke, coordinator, health, held, node, write_config

pytestmark = pytest.mark.broker
Seed = Callable[..., None]


def test_status_all_well_exits_0(invoke: Invoke, seed: Seed) -> None:
    """A healthy gate, a fresh coordinator and online nodes with their hook: exit 0, 'all is well'."""
    seed(health(True), coordinator(), node("pve1"), node("pve2"))
    result = invoke("status")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "coordinator  leader on pve2 since" in out
    assert "linstor  healthy since" in out
    assert "target http://10.43.7.254:3370/health  held starts: 0" in out
    assert "pve1  online  startgate 0.1.0  hook ok (/var/lib/vz/snippets/startgate-hook)" in out
    assert out.rstrip().endswith("all is well")


def test_status_unhealthy_gate_and_held_starts_exit_1(invoke: Invoke, seed: Seed) -> None:
    """An unhealthy gate is a problem: exit 1, the detail and the held count per gate are shown."""
    seed(health(False), coordinator(held=2), node("pve1"), held(101), held(102, type="lxc", node="pve2"))
    result = invoke("status")
    assert result.exit_code == 1, result.output
    assert "linstor  UNHEALTHY since" in result.stdout
    assert "held starts: 2" in result.stdout
    assert "gate linstor is unhealthy: connection refused" in result.stdout


def test_status_without_coordinator_exits_1_with_a_clear_message(invoke: Invoke, seed: Seed) -> None:
    """No coordinator status retained: exit 1 and say so."""
    seed(health(True), node("pve1"))
    result = invoke("status")
    assert result.exit_code == 1
    assert "no coordinator has published its status" in result.stdout


def test_status_flags_stale_coordinator_offline_node_and_missing_hook(invoke: Invoke, seed: Seed) -> None:
    """A coordinator silent for 3 heartbeats, an offline node and a missing hook file are problems."""
    hook = {"path": "/var/lib/vz/snippets/startgate-hook", "exists": False, "executable": False}
    seed(
        health(True),
        coordinator(time=coordinator().time - 200, heartbeat_s=30),
        node("pve1", state="offline"),
        node("pve2", hook=hook),
    )
    result = invoke("status")
    assert result.exit_code == 1
    assert "it may be down" in result.stdout
    assert "node pve1 is offline" in result.stdout
    assert "node pve2: hook file /var/lib/vz/snippets/startgate-hook is missing" in result.stdout


def test_status_json_validates_against_the_bus_models(invoke: Invoke, seed: Seed) -> None:
    """--json carries every retained message exactly as on the wire."""
    seed(health(True), coordinator(), node("pve1"), held(101))
    result = invoke("status", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True
    assert data["problems"] == []
    m.CoordinatorStatus.model_validate(data["coordinator"])
    assert data["gates"][0]["gate"] == "linstor"
    assert data["gates"][0]["held"] == 1
    m.GateHealth.model_validate(data["gates"][0]["health"])
    assert [m.NodeStatus.model_validate(n).node for n in data["nodes"]] == ["pve1"]
    assert data["brokers"][0]["ready"] is True


def test_status_without_a_broker_exits_1(tmp_path: Path, config_dir: Path, topic_prefix: str) -> None:
    """No broker answers: a clear message naming the broker, exit 1."""
    url = f"mqtt://127.0.0.1:{free_port()}"
    cfg = write_config(tmp_path / "sg.toml", [url], topic_prefix, config_dir)
    result = CliRunner().invoke(app, ["--config", str(cfg), "status"])
    assert result.exit_code == 1
    assert "no broker answered" in result.stderr
    assert url in result.stderr


def test_status_with_one_of_two_brokers_down_reads_the_other(
    tmp_path: Path, config_dir: Path, topic_prefix: str, seed: Seed, session_broker: MosquittoProcess
) -> None:
    """A dead broker first in the list is reported, and the state comes from the live one."""
    dead = f"mqtt://127.0.0.1:{free_port()}"
    cfg = write_config(tmp_path / "sg.toml", [dead, session_broker.url], topic_prefix, config_dir)
    seed(health(True), coordinator(), node("pve1"))
    result = CliRunner().invoke(app, ["--config", str(cfg), "status"])
    assert result.exit_code == 1
    assert f"broker {dead} did not answer" in result.stdout
    assert "linstor  healthy since" in result.stdout


def test_status_without_config_exits_2(tmp_path: Path) -> None:
    """A missing config file is a usage error naming the file."""
    result = CliRunner().invoke(app, ["--config", str(tmp_path / "nope.toml"), "status"])
    assert result.exit_code == 2
    assert "nope.toml" in result.stderr


def test_queue_lists_held_starts_in_release_order(invoke: Invoke, seed: Seed) -> None:
    """One row per held start, sorted by node, startup order, VMID; failed ones show the reason."""
    seed(
        held(102, node="pve2", type="lxc", name="db", ha=True),
        held(101, name="web1", startup_order=2),
        held(105, name="late"),
        held(104, name="first", startup_order=1, state="failed", reason="start failed: timeout"),
    )
    result = invoke("queue")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "VMID", "NAME", "TYPE", "NODE", "HA", "GATES", "HELD", "SINCE", "TRIES", "ORDER", "STATE",
    ]  # fmt: skip
    assert [ln.split()[0] for ln in lines[1:]] == ["104", "101", "105", "102"]
    assert lines[1].endswith("failed: start failed: timeout")
    assert " lxc " in lines[4]
    assert " yes " in lines[4]


def test_queue_empty_says_so(invoke: Invoke, seed: Seed) -> None:
    """No held starts: one sentence, exit 0."""
    seed(health(True))
    result = invoke("queue")
    assert result.exit_code == 0
    assert result.stdout.strip() == "no held starts"


def test_queue_json_is_a_list_of_held_start_messages(invoke: Invoke, seed: Seed) -> None:
    """--json prints a JSON array whose items validate as HeldStart."""
    seed(held(101, name="web1"), held(102, node="pve2"))
    result = invoke("queue", "--json")
    assert result.exit_code == 0, result.output
    items = [m.HeldStart.model_validate(x) for x in json.loads(result.stdout)]
    assert [h.vmid for h in items] == [101, 102]


def test_queue_watch_prints_again_when_the_queue_changes(invoke: Invoke, seed: Seed) -> None:
    """--watch renders the queue, then again after a held start appears."""
    seed(held(101))

    def later() -> None:
        time.sleep(1.0)
        seed(held(102, node="pve2"))

    t = threading.Thread(target=later, daemon=True)
    t.start()
    result = invoke("queue", "--watch", "--updates", "2")
    t.join()
    assert result.exit_code == 0, result.output
    screens = result.stdout.split("-- ")[1:]
    assert len(screens) == 2
    assert "101" in screens[0]
    assert "102" not in screens[0]
    assert "102" in screens[1]


def test_newest_copy_wins_across_brokers_and_garbage_is_skipped(
    *,
    tmp_path: Path,
    config_dir: Path,
    topic_prefix: str,
    session_broker: MosquittoProcess,
    broker: MosquittoProcess,
    fast: ClientSettings,
) -> None:
    """A broker that missed an update cannot roll the picture back; an invalid payload is skipped."""
    topics = Topics(topic_prefix, "pve1")
    old = health(False, checked_at=time.time() - 30)
    new = health(True)
    publish_retained(session_broker.url, topics, fast, [old, coordinator()])
    publish_retained(broker.url, topics, fast, [new])
    with Publisher([broker.url], fast) as pub:
        pub.publish(topics.held(101), b"{not json", retain=True)
    cfg = write_config(tmp_path / "sg.toml", [session_broker.url, broker.url], topic_prefix, config_dir)
    result = CliRunner().invoke(app, ["--config", str(cfg), "status", "--json"])
    data = json.loads(result.stdout)
    assert data["gates"][0]["health"]["healthy"] is True
    assert data["held"] == 0
    assert [b["ready"] for b in data["brokers"]] == [True, True]
