"""Fixtures for the hookscript and agent tests: a real Mosquitto, a node's files, a bus watcher.

The broker is the session's real Mosquitto from tests/conftest.py; each test gets its own cluster
name, so retained records of one test never reach another.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from startgate.bus import messages
from startgate.bus.broker import MosquittoProcess
from startgate.bus.oneshot import BrokerAddress, Deadline, LinkOptions, Outgoing, connect_first
from startgate.bus.topics import Topics
from startgate.hooks.snippet import snippet_text
from startgate.hooks.testing import FakeLinstor

FIXTURES = Path(__file__).parent / "fixtures" / "pve"
NODE = "pve1"
PROXMOX_PATH = "/sbin:/bin:/usr/sbin:/usr/bin"  # what pvedaemon and the HA LRM set


@pytest.fixture
def mosquitto(session_broker: MosquittoProcess) -> MosquittoProcess:
    """The session's real Mosquitto (tests keep apart by cluster name)."""
    return session_broker


@pytest.fixture
def controller() -> Iterator[FakeLinstor]:
    """A fake LINSTOR controller answering /health with 200 (settable)."""
    fake = FakeLinstor(200)
    yield fake
    fake.close()


class HookResult(NamedTuple):
    """What one hook process did."""

    code: int
    stdout: str
    stderr: str
    elapsed: float


class Watcher:
    """A paho subscriber collecting every message under one cluster's topics."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        assert self.subscribed.wait(5), "no SUBACK"

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def matching(self, pred: Callable[[str, bytes], bool]) -> list[tuple[str, bytes]]:
        """The messages so far for which pred(topic, payload) holds."""
        with self.lock:
            return [(t, p) for t, p, _r in self.messages if pred(t, p)]

    def wait_for(
        self, pred: Callable[[str, bytes], bool], count: int = 1, timeout: float = 5.0
    ) -> list[tuple[str, bytes]]:
        """Wait until `count` matching messages arrived; return them."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = self.matching(pred)
            if len(found) >= count:
                return found
            time.sleep(0.01)
        raise AssertionError(f"expected {count} matching message(s), got {self.matching(pred)}")

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()  # first, so the network loop ends at once
        self.client.loop_stop()


class Node:
    """One Proxmox node's files for the hook: guest configs, startgate.toml, snippet, spool, state."""

    def __init__(self, root: Path, broker_urls: list[str], controller_urls: list[str]) -> None:
        self.root = root
        self.cluster = "t" + uuid.uuid4().hex[:12]
        self.topics = Topics("startgate", self.cluster)
        self.pve = root / "pve"
        nodes = self.pve / "nodes" / NODE
        for sub in ("qemu-server", "lxc"):
            shutil.copytree(FIXTURES / sub, nodes / sub)
        shutil.copytree(FIXTURES / "ha", self.pve / "ha")
        self.spool_dir = root / "spool"
        self.state_dir = root / "state"
        self.cache_dir = root / "cache"
        self.snippet = root / "snippets" / "startgate-hook"
        self.snippet.parent.mkdir()
        self.snippet.write_text(snippet_text())
        self.snippet.chmod(0o755)
        self.config = root / "startgate.toml"
        self.write_config(broker_urls, controller_urls)

    def write_config(
        self, broker_urls: list[str], controller_urls: list[str], max_seconds: float = 3.0, extra: str = ""
    ) -> None:
        """(Re)write startgate.toml."""
        self.config.write_text(
            f"""
cluster = "{self.cluster}"
node = "{NODE}"
[bus]
brokers = {json.dumps(broker_urls)}
connect_timeout_s = 1.0
[proxmox]
config_dir = "{self.pve}"
[[gates]]
name = "linstor"
vmid = 100
check = {{ kind = "linstor", urls = {json.dumps(controller_urls)}, timeout_s = 1.0 }}
storages = ["drbdstorage"]
tags = ["needs-linstor"]
vmids = [150]
[hook]
max_seconds = {max_seconds}
spool_dir = "{self.spool_dir}"
health_max_age_s = 10
snippet = "{self.snippet}"
[coordinator]
state_dir = "{self.state_dir}"
{extra}
"""
        )

    def env(self, **extra: str) -> dict[str, str]:
        """The environment Proxmox gives a hook, plus where this node's startgate files are."""
        return {
            "PATH": PROXMOX_PATH,
            "LC_ALL": "C",
            "STARTGATE_CONFIG": str(self.config),
            "STARTGATE_CACHE_DIR": str(self.cache_dir),
            **extra,
        }

    def run(self, vmid: int | str, phase: str = "pre-start", **env: str) -> HookResult:
        """Run the snippet exactly as Proxmox does: argv <vmid> <phase>, stdin a closed pipe, LC_ALL=C."""
        start = time.monotonic()
        read_end, write_end = os.pipe()
        os.close(write_end)  # like pve-common's run_command: a pipe with nothing to read, closed at once
        try:
            proc = subprocess.Popen(
                [str(self.snippet), str(vmid), phase],
                stdin=read_end,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.env(**env),
                cwd="/",
            )
        finally:
            os.close(read_end)
        out, err = proc.communicate(timeout=30)
        return HookResult(proc.returncode, out.decode(), err.decode(), time.monotonic() - start)

    def guest_config(self, vmid: int, kind: str = "qemu-server") -> Path:
        """The path of a guest's config on this node."""
        return self.pve / "nodes" / NODE / kind / f"{vmid}.conf"

    def spooled(self) -> list[dict[str, Any]]:
        """The spooled records, oldest first."""
        if not self.spool_dir.is_dir():
            return []
        names = sorted(p for p in self.spool_dir.iterdir() if p.suffix == ".json")
        return [json.loads(p.read_text()) for p in names]


@pytest.fixture
def node(tmp_path: Path, mosquitto: MosquittoProcess, controller: FakeLinstor) -> Node:
    """A node whose broker and controller are up."""
    return Node(tmp_path, [mosquitto.url], [controller.url])


@pytest.fixture
def watch(mosquitto: MosquittoProcess, node: Node) -> Iterator[Watcher]:
    """A watcher on the node's cluster topics."""
    w = Watcher(mosquitto.port, node.topics.everything)
    yield w
    w.close()


def publish(broker_url: str, *msgs: tuple[str, bytes, bool]) -> None:
    """Publish messages (QoS 1) with the one-shot client."""
    opts = LinkOptions(brokers=(BrokerAddress.parse(broker_url),))
    conn = connect_first(opts, Deadline(5))
    conn.publish([Outgoing(t, p, r) for t, p, r in msgs], Deadline(5))
    conn.close()


def retained(broker_url: str, topic: str) -> bytes | None:
    """The retained payload of one topic, if any."""
    opts = LinkOptions(brokers=(BrokerAddress.parse(broker_url),))
    conn = connect_first(opts, Deadline(5))
    found, _ = conn.retained([topic], Deadline(5))
    conn.close()
    return found.get(topic)


def health(
    node: Node, healthy: bool, age_s: float = 0.0, nodes_ready: list[str] | None = None
) -> tuple[str, bytes, bool]:
    """A retained gate health message for the node's linstor gate, `age_s` old."""
    now = time.time()
    msg = messages.GateHealth(
        gate="linstor",
        healthy=healthy,
        since=now - 100,
        checked_at=now - age_s,
        detail="HTTP 200 from controller" if healthy else "no answer from controller",
        nodes_ready=nodes_ready,
    )
    return node.topics.gate_health("linstor"), msg.to_json(), True


def decoded(node: Node, topic: str, payload: bytes) -> messages.Message:
    """Validate a payload with the pydantic models (raises on anything invalid)."""
    msg = messages.decode(node.topics, topic, payload)
    assert isinstance(msg, messages.Message)
    return msg
