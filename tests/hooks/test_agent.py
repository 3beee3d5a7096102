"""The node agent against a real Mosquitto: status and Last Will, boot events, spool forwarding."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import pytest

from startgate.bus import messages
from startgate.bus.broker import MosquittoProcess, free_port, write_password_file
from startgate.bus.mqtt import ClientSettings
from startgate.hooks import settings as hook_settings
from startgate.hooks.agent import Agent, AgentOptions
from startgate.hooks.links import AgentLink, OneshotLink, PahoLink
from startgate.hooks.member import link_options
from startgate.hooks.settings import HookSettings
from startgate.hooks.spool import Spool
from startgate.hooks.testing import FakeLinstor, RecordingNotifier
from tests.hooks.conftest import Node, Watcher, decoded, retained

pytestmark = pytest.mark.broker


class Clock:
    """A monotonic clock the test moves by hand (the agent's back-off runs on it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


LINKS = ["oneshot", "paho"]


def make_link(settings: HookSettings, kind: str) -> AgentLink:
    """One of the two AgentLinks, with short timeouts."""
    if kind == "oneshot":
        return OneshotLink(link_options(settings, "startgate-agent"), timeout_s=2.0)
    fast = ClientSettings(keepalive_s=5, connect_timeout_s=1.0, reconnect_min_s=0.05, reconnect_max_s=0.3)
    return PahoLink(list(settings.bus.brokers), fast, f"agent-{uuid.uuid4().hex[:8]}", timeout_s=2.0)


def make_agent(node: Node, boot_id_file: Path, kind: str = "oneshot") -> tuple[Agent, Clock]:
    """An agent for `node` with a hand-moved clock, polling fast."""
    settings = hook_settings.load(node.env())
    clock = Clock()
    agent = Agent(
        settings,
        make_link(settings, kind),
        RecordingNotifier(),
        AgentOptions(boot_id_path=boot_id_file, poll_s=0.02, retry_s=5.0, version="9.9.9"),
        mono=clock,
    )
    return agent, clock


@pytest.fixture
def boot_id(tmp_path: Path) -> Path:
    """A boot_id file (the kernel's is /proc/sys/kernel/random/boot_id)."""
    path = tmp_path / "boot_id"
    path.write_text("0f3c8a52-7d1e-4b8e-9a51-2c6f1e0d9b7a\n")
    return path


def status(node: Node, broker: MosquittoProcess) -> messages.NodeStatus:
    """The node's retained status, validated."""
    payload = retained(broker.url, node.topics.node_status("pve1"))
    assert payload is not None
    msg = decoded(node, node.topics.node_status("pve1"), payload)
    assert isinstance(msg, messages.NodeStatus)
    return msg


def test_status_is_retained_and_the_will_marks_it_offline(
    node: Node, mosquitto: MosquittoProcess, boot_id: Path
) -> None:
    """Connected: online with boot id, version, hook file; a dead link: the broker says offline."""
    agent, _ = make_agent(node, boot_id)
    agent.tick()
    st = status(node, mosquitto)
    assert (st.state, st.node, st.boot_id, st.version) == (
        "online",
        "pve1",
        boot_id.read_text().strip(),
        "9.9.9",
    )
    assert st.hook == messages.HookStatus(path=str(node.snippet), exists=True, executable=True)
    node.snippet.chmod(0o644)
    agent.tick()
    assert status(node, mosquitto).hook == messages.HookStatus(
        path=str(node.snippet), exists=True, executable=False
    )
    agent.link.drop()  # the agent dies: no DISCONNECT
    for _ in range(100):
        if status(node, mosquitto).state == "offline":
            break
        threading.Event().wait(0.02)
    assert status(node, mosquitto).state == "offline"


def run_once(agent: Agent) -> RecordingNotifier:
    """Run the agent's loop briefly, then stop it (SIGTERM's path)."""
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,))
    thread.start()
    stop.wait(0.2)
    stop.set()
    thread.join(10)
    assert isinstance(agent.notifier, RecordingNotifier)
    return agent.notifier


@pytest.mark.parametrize("kind", LINKS)
def test_boot_event_once_per_boot_id_and_shutdown_goes_offline(
    node: Node, watch: Watcher, mosquitto: MosquittoProcess, boot_id: Path, kind: str
) -> None:
    """Two runs in one boot: one boot event, two shutdown events; a new boot id: a new boot event."""
    node_events = node.topics.node_event("pve1")

    def kinds() -> list[str]:
        out: list[str] = []
        for t, p in watch.matching(lambda t, _p: t == node_events):
            msg = decoded(node, t, p)
            assert isinstance(msg, messages.NodeEvent)
            out.append(msg.kind)
        return out

    notes = run_once(make_agent(node, boot_id, kind)[0])
    assert notes.sent[0] == "STATUS=starting"
    assert "READY=1" in notes.sent
    assert "WATCHDOG=1" in notes.sent
    assert notes.sent[-1] == "STOPPING=1"
    assert status(node, mosquitto).state == "offline"
    run_once(make_agent(node, boot_id, kind)[0])
    watch.wait_for(lambda t, _p: t == node_events, count=3)
    assert kinds() == ["boot", "shutdown", "shutdown"]
    boot_id.write_text("7a1b2c3d-0000-4000-8000-000000000001\n")
    run_once(make_agent(node, boot_id, kind)[0])
    watch.wait_for(lambda t, _p: t == node_events, count=5)
    assert kinds() == ["boot", "shutdown", "shutdown", "boot", "shutdown"]


@pytest.mark.parametrize("kind", LINKS)
def test_spool_drained_in_order_across_a_broker_restart(
    tmp_path: Path, broker: MosquittoProcess, controller: FakeLinstor, boot_id: Path, kind: str
) -> None:
    """Spooled messages reach the broker in spool order, each once, before and after a restart."""
    node = Node(tmp_path / "n", [broker.url], [controller.url])
    spool = Spool(node.spool_dir)
    agent, clock = make_agent(node, boot_id, kind)
    watch = Watcher(broker.port, node.topics.all_guest_events)
    for i in range(150):
        spool.put(node.topics.guest_event(100 + i), f'{{"n":{i}}}'.encode(), False)
    agent.tick()
    first = watch.wait_for(lambda _t, _p: True, count=150)
    assert [p for _t, p in first] == [f'{{"n":{i}}}'.encode() for i in range(150)]
    assert spool.count() == 0
    watch.close()

    broker.stop()
    for i in range(150, 170):
        spool.put(node.topics.guest_event(100 + i), f'{{"n":{i}}}'.encode(), False)
    for _ in range(100):  # until the agent has noticed
        agent.tick()
        if not agent.link.connected():
            break
        threading.Event().wait(0.02)
    assert spool.count() == 20
    broker.start()
    watch = Watcher(broker.port, node.topics.all_guest_events)
    for _ in range(500):
        clock.now += 1.0  # the back-off runs on this clock
        agent.tick()
        if spool.count() == 0:
            break
        threading.Event().wait(0.02)
    second = watch.wait_for(lambda _t, _p: True, count=20)
    assert [p for _t, p in second] == [f'{{"n":{i}}}'.encode() for i in range(150, 170)]
    assert status(node, broker).state == "online"
    watch.close()
    agent.shutdown()


@pytest.mark.parametrize("kind", LINKS)
def test_a_message_the_broker_refuses_is_set_aside(
    tmp_path: Path, controller: FakeLinstor, boot_id: Path, kind: str
) -> None:
    """An ACL-refused spooled message (MQTT 5: PUBACK 0x87) goes to <name>.rejected; the rest flows on."""
    work = tmp_path / "secured"
    work.mkdir()
    acl = work / "acl"
    users = write_password_file(work / "passwd", {"agent": "agentpw", "reader": "readerpw"})
    broker = MosquittoProcess(work / "m", password_file=users, acl_file=acl)
    node = Node(tmp_path / "n", [f"mqtt://127.0.0.1:{free_port()}"], [controller.url])
    base = node.topics.base
    acl.write_text(
        f"user agent\ntopic write {base}/guest/#\ntopic write {base}/node/#\n\nuser reader\ntopic read #\n"
    )
    broker.start()
    try:
        settings = hook_settings.load(node.env())
        settings = settings._replace(bus=settings.bus._replace(brokers=(broker.url,), username="agent"))
        pw = tmp_path / "pw"
        pw.write_text("agentpw")
        pw.chmod(0o600)
        settings = settings._replace(bus=settings.bus._replace(password_file=str(pw)))
        if kind == "oneshot":
            link: AgentLink = OneshotLink(link_options(settings, "startgate-agent"), timeout_s=2.0)
        else:
            fast = ClientSettings(
                username="agent", password="agentpw", connect_timeout_s=1.0, reconnect_min_s=0.05
            )
            link = PahoLink([broker.url], fast, f"agent-{uuid.uuid4().hex[:8]}", timeout_s=2.0)
        agent = Agent(settings, link, RecordingNotifier(), AgentOptions(boot_id_path=boot_id, poll_s=0.02))
        spool = Spool(node.spool_dir)
        spool.put(node.topics.guest_event(101), b'{"n":1}', False)
        spool.put(node.topics.held(101), b'{"n":2}', True)
        spool.put(node.topics.guest_event(101), b'{"n":3}', False)
        agent.tick()
        assert spool.count() == 0
        (rejected,) = node.spool_dir.glob("*.rejected")
        assert json.loads(rejected.read_text())["topic"] == node.topics.held(101)
        assert agent.link.connected()
        agent.shutdown()
    finally:
        broker.stop()
