"""Bad input and trouble outside: the hook says why in one line, exits safely, and ends in time."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from startgate.bus import messages
from startgate.bus.broker import MosquittoProcess, free_port
from startgate.bus.testing import BlackHole
from startgate.hooks import settings as hook_settings
from startgate.hooks.agent import Agent, AgentOptions
from startgate.hooks.links import OneshotLink
from startgate.hooks.member import link_options
from startgate.hooks.snippet import shebang_interpreter
from startgate.hooks.testing import FakeLinstor, RecordingNotifier
from tests.hooks.conftest import Node, Watcher, decoded

pytestmark = pytest.mark.broker


@pytest.mark.parametrize(
    ("args", "code", "line"),
    [
        (
            ["101", "pre-migrate"],
            0,
            "startgate: unknown hook phase 'pre-migrate' for guest 101; nothing to do",
        ),
        (
            ["abc", "pre-start"],
            0,
            "startgate: ignoring hook call for phase 'pre-start': VMID 'abc' is not a number",
        ),
        (
            ["99", "pre-start"],
            0,
            "startgate: ignoring hook call for phase 'pre-start': VMID 99 is out of range",
        ),
        (["101"], 2, "usage: startgate-hook <vmid> <phase>"),
    ],
)
def test_bad_arguments(node: Node, args: list[str], code: int, line: str) -> None:
    """Unknown phase, bad VMID: one clear line and exit 0; too few arguments: usage, exit 2."""
    env = node.env()
    proc = subprocess.run([str(node.snippet), *args], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == code
    assert proc.stdout.startswith(line), proc.stdout
    assert proc.stdout.count("\n") == 1


def test_missing_guest_config_allows_loudly(node: Node, watch: Watcher) -> None:
    """No config for the VMID on this node: allow, say ERROR in the task log and on the bus."""
    r = node.run(999)
    assert r.code == 0
    assert r.stdout.startswith(
        "startgate: ERROR: allowing start of VM 999 without checking its gates: no config"
    )
    ((topic, payload),) = watch.wait_for(lambda t, _p: t == node.topics.guest_event(999))
    event = decoded(node, topic, payload)
    assert isinstance(event, messages.GuestEvent)
    assert event.decision == "allow"
    assert event.error is not None
    assert "no config for guest 999" in event.error


def test_garbled_guest_config_allows_loudly(node: Node) -> None:
    """A binary guest config (VM 107): allow, naming the file."""
    r = node.run(107)
    assert r.code == 0
    assert "ERROR: allowing start of VM 107" in r.stdout
    assert "107.conf: contains NUL bytes" in r.stdout


def test_missing_startgate_config_allows_loudly(node: Node) -> None:
    """No startgate.toml: pre-start allows and names the file; other phases exit 0 too."""
    node.config.unlink()
    r = node.run(101)
    assert r.code == 0
    assert r.stdout == (
        f"startgate: ERROR: allowing start of guest 101 without checking its gates: {node.config}: "
        "file not found (set --config or $STARTGATE_CONFIG)\n"
    )
    r = node.run(101, "post-stop")
    assert r.code == 0
    assert "post-stop of guest 101 not reported" in r.stdout


def test_invalid_startgate_config_names_the_key(node: Node) -> None:
    """An unknown key in startgate.toml: allow, and the line names the key."""
    node.write_config(["mqtt://127.0.0.1:1"], ["http://127.0.0.1:9"], extra="bogus = 1")
    r = node.run(101)
    assert r.code == 0
    assert "coordinator.bogus: unknown key" in r.stdout


def test_broker_port_closed_spools_and_the_agent_forwards_once(
    node: Node, controller: FakeLinstor, tmp_path: Path
) -> None:
    """No broker: the hold is spooled; when a broker appears on that port, the agent forwards it once."""
    port = free_port()
    node.write_config([f"mqtt://127.0.0.1:{port}"], [controller.url])
    controller.status = 503
    r = node.run(101)
    assert r.code == 1
    assert r.stdout.endswith("it will be started automatically (recorded locally: no broker answered)\n")
    spooled = node.spooled()
    assert [rec["topic"] for rec in spooled] == [node.topics.held(101), node.topics.guest_event(101)]
    assert node.run(101).code == 1  # attempts continue from the spooled record
    assert [m.attempts for m in held_records(node)] == [1, 2]

    broker = MosquittoProcess(tmp_path / "returning-broker", port=port).start()
    try:
        forward_and_check(node, broker, expected=4)
    finally:
        broker.stop()


def held_records(node: Node) -> list[messages.HeldStart]:
    """The spooled held records, validated."""
    out = []
    for rec in node.spooled():
        msg = decoded(node, rec["topic"], rec["payload"].encode())
        if isinstance(msg, messages.HeldStart):
            out.append(msg)
    return out


def forward_and_check(node: Node, broker: MosquittoProcess, expected: int) -> None:
    """Run the agent until the spool is empty; each spooled message reached the broker exactly once."""
    wanted = {decoded(node, r["topic"], r["payload"].encode()).event_id for r in node.spooled()}
    assert len(wanted) == expected
    watch = Watcher(broker.port, node.topics.everything)
    settings = hook_settings.load(node.env())
    agent = Agent(
        settings,
        OneshotLink(link_options(settings), timeout_s=2.0),
        RecordingNotifier(),
        AgentOptions(boot_id_path=Path("/nonexistent"), poll_s=0.05),
    )
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,))
    thread.start()
    try:
        got = watch.wait_for(lambda t, _p: "/node/" not in t, count=expected)
        stop.wait(0.5)  # more ticks: nothing may be sent twice
        got = watch.matching(lambda t, _p: "/node/" not in t)
        ids = [decoded(node, t, p).event_id for t, p in got]
        assert sorted(ids) == sorted(wanted)
        assert node.spooled() == []
    finally:
        stop.set()
        thread.join(10)
        watch.close()


def test_black_hole_broker_and_controller_end_within_the_bound(node: Node) -> None:
    """Broker and controller accept TCP and never answer: the hook still ends within max_seconds, spooled."""
    broker_hole, controller_hole = BlackHole(), BlackHole()
    try:
        node.write_config(
            [f"mqtt://127.0.0.1:{broker_hole.port}"],
            [f"http://127.0.0.1:{controller_hole.port}"],
            max_seconds=2.0,
        )
        node.run(102)  # warm the config cache (validation with pydantic is the slow path)
        r = node.run(101)
        assert r.code == 1
        assert r.elapsed < 2.0 + 0.2  # the bound, plus what spawning a process costs the test
        assert f"no answer from 127.0.0.1:{controller_hole.port}" in r.stdout
        assert [rec["topic"] for rec in node.spooled()][-2:] == [
            node.topics.held(101),
            node.topics.guest_event(101),
        ]
    finally:
        broker_hole.close()
        controller_hole.close()


def test_controller_black_hole_with_the_broker_up(node: Node, mosquitto: MosquittoProcess) -> None:
    """A controller that never answers: the hold is published (not spooled), within the bound."""
    hole = BlackHole()
    try:
        node.write_config([mosquitto.url], [f"http://127.0.0.1:{hole.port}"], max_seconds=2.0)
        r = node.run(101)
        assert r.code == 1
        assert r.elapsed < 2.2
        assert "recorded locally" not in r.stdout
        assert node.spooled() == []
    finally:
        hole.close()


def test_hard_stop_when_a_file_read_hangs(node: Node) -> None:
    """A guest config that blocks on read (a FIFO, like a hung pmxcfs): the timer ends the hook, allowing."""
    node.write_config(["mqtt://127.0.0.1:1"], ["http://127.0.0.1:9"], max_seconds=1.0)
    node.run(102)  # warm the cache
    conf = node.guest_config(101)
    conf.unlink()
    os.mkfifo(conf)
    r = node.run(101)
    assert r.code == 0
    assert r.stdout == "startgate: ERROR: allowing start of guest 101: the hook ran out of time (1 s)\n"
    assert r.elapsed < 1.2


def test_hot_path_imports_no_heavy_library(node: Node, mosquitto: MosquittoProcess) -> None:
    """With a warm cache, a held start imports no pydantic, paho, typer, requests, http.client or ssl."""
    node.run(102)  # warm the cache
    python = shebang_interpreter(node.snippet.read_text())
    assert python is not None
    proc = subprocess.run(
        [python, "-IS", "-X", "importtime", str(node.snippet), "101", "pre-start"],
        env=node.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr[-500:]
    modules = {
        line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")
    }
    heavy = {
        m for m in modules if m.split(".")[0] in {"pydantic", "paho", "typer", "requests", "ssl", "uuid"}
    }
    heavy |= {m for m in modules if m.startswith("http")}
    assert heavy == set()
    assert "startgate.hooks.entry" in modules
