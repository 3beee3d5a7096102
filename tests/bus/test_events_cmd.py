"""`startgate events` against a real broker, through typer's CliRunner."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from startgate.bus.broker import MosquittoProcess, free_port
from startgate.bus.mqtt import ClientSettings, Publisher
from startgate.bus.topics import Topics
from startgate.cli import app

pytestmark = pytest.mark.broker
GOLDEN = Path(__file__).parent / "golden"


def write_config(path: Path, brokers: list[str], prefix: str) -> Path:
    """A minimal startgate.toml pointing at the given brokers."""
    path.write_text(
        f"""
cluster = "pve1"
[bus]
brokers = {json.dumps(brokers)}
topic_prefix = "{prefix}"
connect_timeout_s = 0.5
[[gates]]
name = "linstor"
check = {{ kind = "tcp", host = "127.0.0.1", port = 3370 }}
vmids = [101]
"""
    )
    return path


def golden(kind: str, event_id: str) -> bytes:
    """A golden wire sample with its event id replaced."""
    raw = json.loads((GOLDEN / f"{kind}.json").read_text())
    raw["event_id"] = event_id
    return json.dumps(raw).encode()


def seed(url: str, topics: Topics, fast: ClientSettings) -> None:
    """Retained state: a held start, a gate's health, and a garbage payload on held/102."""
    with Publisher([url], fast) as pub:
        pub.publish(topics.held(101), golden("held", "1" * 32), retain=True)
        pub.publish(topics.gate_health("linstor"), golden("gate_health", "2" * 32), retain=True)
        pub.publish(topics.held(102), b"\x00garbage", retain=True)


def test_events_prints_retained_state_decoded_and_invalid_ones_as_such(
    session_broker: MosquittoProcess, topic_prefix: str, fast: ClientSettings, tmp_path: Path
) -> None:
    """Without --follow, the retained messages are printed one line each, the bad one as INVALID."""
    topics = Topics(topic_prefix, "pve1")
    seed(session_broker.url, topics, fast)
    cfg = write_config(tmp_path / "sg.toml", [session_broker.url], topic_prefix)
    result = CliRunner().invoke(app, ["--config", str(cfg), "events", "--wait", "0.5"])
    assert result.exit_code == 0, result.output
    lines = sorted(result.stdout.splitlines())
    assert len(lines) == 3
    assert " gate/linstor/health retained GateHealth gate=linstor healthy=true" in lines[0]
    assert " held/101 retained HeldStart vmid=101 node=pve1 type=qemu gates=linstor" in lines[1]
    assert " held/102 retained INVALID (8 bytes): " in lines[2]
    assert "\\x00garbage" in lines[2]  # control characters are shown escaped


def test_events_json_gives_one_object_per_line(
    session_broker: MosquittoProcess, topic_prefix: str, fast: ClientSettings, tmp_path: Path
) -> None:
    """--json prints each message as a JSON object with its topic, kind and decoded fields."""
    topics = Topics(topic_prefix, "pve1")
    seed(session_broker.url, topics, fast)
    cfg = write_config(tmp_path / "sg.toml", [session_broker.url], topic_prefix)
    result = CliRunner().invoke(app, ["--config", str(cfg), "events", "--json", "--wait", "0.5"])
    assert result.exit_code == 0, result.output
    objs = {o["topic"]: o for o in map(json.loads, result.stdout.splitlines())}
    assert objs[topics.held(101)]["kind"] == "held"
    assert objs[topics.held(101)]["message"]["event_id"] == "1" * 32
    assert objs[topics.held(101)]["retained"] is True
    assert objs[topics.gate_health("linstor")]["message"]["gate"] == "linstor"
    assert "not JSON" in objs[topics.held(102)]["invalid"]


def test_events_follow_prints_live_traffic_after_the_retained_state(
    session_broker: MosquittoProcess, topic_prefix: str, fast: ClientSettings, tmp_path: Path
) -> None:
    """With --follow, live guest events follow the retained state (and a cleared retained topic shows)."""
    topics = Topics(topic_prefix, "pve1")
    with Publisher([session_broker.url], fast) as pub:
        pub.publish(topics.held(101), golden("held", "1" * 32), retain=True)
    cfg = write_config(tmp_path / "sg.toml", [session_broker.url], topic_prefix)
    stop = threading.Event()

    def live() -> None:
        with Publisher([session_broker.url], fast) as pub:
            i = 0
            while not stop.wait(0.1):
                pub.publish(topics.guest_event(101), golden("guest_event", f"{i:032x}"))
                i += 1

    publisher = threading.Thread(target=live, daemon=True)
    publisher.start()
    try:
        result = CliRunner().invoke(app, ["--config", str(cfg), "events", "--follow", "--count", "3"])
    finally:
        stop.set()
        publisher.join()
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert " held/101 retained HeldStart " in lines[0]
    assert all(
        " guest/101/event GuestEvent vmid=101 node=pve1 type=qemu phase=pre-start" in x for x in lines[1:]
    )


def test_events_without_a_broker_fails_with_a_clear_message(tmp_path: Path, topic_prefix: str) -> None:
    """No broker answering: exit 1 and a message naming the broker."""
    url = f"mqtt://127.0.0.1:{free_port()}"
    cfg = write_config(tmp_path / "sg.toml", [url], topic_prefix)
    result = CliRunner().invoke(app, ["--config", str(cfg), "events"])
    assert result.exit_code == 1
    assert "no broker ready" in result.output
    assert url in result.output
