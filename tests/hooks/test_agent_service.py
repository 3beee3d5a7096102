"""`startgate agent` as systemd runs it: sd_notify messages, SIGTERM shutdown, and the Will on SIGKILL."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from startgate.bus import messages
from startgate.bus.broker import MosquittoProcess
from tests.hooks.conftest import Node, Watcher, decoded, retained

pytestmark = pytest.mark.broker


def node_state(node: Node, broker: MosquittoProcess) -> str | None:
    """The node's retained status state, if any."""
    payload = retained(broker.url, node.topics.node_status("pve1"))
    if payload is None:
        return None
    msg = decoded(node, node.topics.node_status("pve1"), payload)
    assert isinstance(msg, messages.NodeStatus)
    return msg.state


def wait_state(node: Node, broker: MosquittoProcess, state: str, timeout: float = 10.0) -> None:
    """Wait until the retained status says `state`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if node_state(node, broker) == state:
            return
        time.sleep(0.05)
    raise AssertionError(f"status never became {state!r} (is {node_state(node, broker)!r})")


def start_agent(node: Node, tmp_path: Path, notify: Path) -> subprocess.Popen[bytes]:
    """`startgate agent` with a NOTIFY_SOCKET, as systemd starts the unit."""
    boot_id = tmp_path / "boot_id"
    boot_id.write_text("4d3c2b1a-0000-4000-8000-00000000abcd\n")
    env = {**node.env(), "NOTIFY_SOCKET": str(notify), "PATH": "/usr/bin:/bin"}
    cli = Path(sys.executable).parent / "startgate"
    return subprocess.Popen(
        [str(cli), "agent", "--boot-id-file", str(boot_id), "--poll", "0.05"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_agent_service_lifecycle(
    node: Node, watch: Watcher, mosquitto: MosquittoProcess, tmp_path: Path
) -> None:
    """READY=1 and WATCHDOG=1 reach systemd; SIGTERM: shutdown event, offline; SIGKILL: the Will."""
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(10)
    proc = start_agent(node, tmp_path, notify)
    try:
        seen: list[str] = []
        while not {"READY=1", "WATCHDOG=1"} <= set(seen):
            seen.append(sock.recv(4096).decode())
        assert seen[0] == "STATUS=starting"
        wait_state(node, mosquitto, "online")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        wait_state(node, mosquitto, "offline")
        kinds = [
            decoded(node, t, p).kind  # type: ignore[attr-defined]  # NodeEvent, checked by decode
            for t, p in watch.wait_for(lambda t, _p: t == node.topics.node_event("pve1"), count=2)
        ]
        assert kinds == ["boot", "shutdown"]

        proc = start_agent(node, tmp_path, notify)
        wait_state(node, mosquitto, "online")
        proc.kill()  # no chance to say goodbye: the broker publishes the Last Will
        proc.wait(10)
        wait_state(node, mosquitto, "offline")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        sock.close()
