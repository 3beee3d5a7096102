"""Persistent sessions, the Last Will and broker restarts, against a real mosquitto."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest

from startgate.bus.broker import MosquittoProcess
from startgate.bus.mqtt import ClientSettings, LinkUp, Message, Publisher, Subscriber, Will
from startgate.bus.mqtt._paho import guard
from startgate.bus.testing import collect
from startgate.bus.values import Protocol
from startgate.errors import BrokerUnavailableError

pytestmark = pytest.mark.broker

WILL_CLIENT = textwrap.dedent(
    """
    import sys, threading
    from startgate.bus.mqtt import ClientSettings, Subscriber, Will
    url, client_id, topic = sys.argv[1:4]
    s = Subscriber(url, ClientSettings(keepalive_s=5), client_id=client_id, will=Will(topic, b"offline"))
    s.start()
    s.wait_ready(10)
    s.publish(topic, b"online", retain=True)
    print("up", flush=True)
    threading.Event().wait(60)
    """
)


def payloads(sub: Subscriber, n: int, timeout: float = 5.0) -> list[bytes]:
    """The payloads of the next `n` messages (LinkUp notices skipped)."""
    got = collect(sub.get, lambda xs: sum(isinstance(x, Message) for x in xs) >= n, timeout)
    return [x.payload for x in got if isinstance(x, Message)]


def test_last_will_is_published_when_the_client_process_is_killed(
    session_broker: MosquittoProcess, topic_prefix: str, fast: ClientSettings
) -> None:
    """SIGKILL of a client process makes the broker publish its retained will ("offline")."""
    topic = f"{topic_prefix}/node/n1/status"
    watcher = Subscriber(session_broker.url, fast, client_id=f"{topic_prefix}-w", topics=[topic]).start()
    child = subprocess.Popen(
        [sys.executable, "-c", WILL_CLIENT, session_broker.url, f"{topic_prefix}-agent", topic],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        watcher.wait_ready(5)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "up"
        assert payloads(watcher, 1) == [b"online"]
        child.send_signal(signal.SIGKILL)
        child.wait(5)
        assert payloads(watcher, 1) == [b"offline"]
    finally:
        child.kill()
        child.wait()
        watcher.stop()
    late = Subscriber(session_broker.url, fast, client_id=f"{topic_prefix}-late", topics=[topic]).start()
    try:
        late.wait_ready(5)
        assert payloads(late, 1) == [b"offline"]
    finally:
        late.stop()


@pytest.mark.parametrize("publish_will", [True, False])
def test_clean_stop_says_offline_only_when_asked(
    session_broker: MosquittoProcess, topic_prefix: str, fast: ClientSettings, publish_will: bool
) -> None:
    """A clean stop does not fire the will; stop(publish_will=True) publishes it itself."""
    topic = f"{topic_prefix}/coordinator/status"
    agent = Subscriber(session_broker.url, fast, client_id=f"{topic_prefix}-a", will=Will(topic, b"offline"))
    agent.start().wait_ready(5)
    agent.publish(topic, b"online", retain=True)
    agent.stop(publish_will=publish_will)
    late = Subscriber(session_broker.url, fast, client_id=f"{topic_prefix}-late", topics=[topic]).start()
    try:
        late.wait_ready(5)
        assert payloads(late, 1) == [b"offline" if publish_will else b"online"]
    finally:
        late.stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_qos1_messages_sent_while_a_persistent_subscriber_was_away_are_delivered(
    session_broker: MosquittoProcess, topic_prefix: str, fast: ClientSettings, protocol: Protocol
) -> None:
    """Messages published while the subscriber was stopped arrive when it returns with the same client id."""
    settings = replace(fast, protocol=protocol)
    topics = [f"{topic_prefix}/#"]
    first = Subscriber(session_broker.url, settings, client_id=f"{topic_prefix}-coord", topics=topics).start()
    first.wait_ready(5)
    first.stop()
    with Publisher([session_broker.url], settings) as pub:
        for i in range(3):
            pub.publish(f"{topic_prefix}/e", f"m{i}".encode())
    again = Subscriber(session_broker.url, settings, client_id=f"{topic_prefix}-coord", topics=topics).start()
    try:
        assert payloads(again, 3) == [b"m0", b"m1", b"m2"]
        assert again.protocol == protocol
    finally:
        again.stop()


@pytest.mark.parametrize("clean", [True, False], ids=["sigterm", "sigkill"])
def test_subscriber_survives_a_broker_restart_without_losing_later_messages(
    broker: MosquittoProcess, topic_prefix: str, fast: ClientSettings, clean: bool
) -> None:
    """After the broker is restarted (stopped or killed), the subscriber reconnects and gets every
    QoS 1 message published once the broker is back."""
    topics = [f"{topic_prefix}/#"]
    # A slower reconnect leaves the messages to be queued in the restored session before it returns.
    settings = replace(fast, reconnect_min_s=0.3, reconnect_max_s=0.3)
    sub = Subscriber(broker.url, settings, client_id=f"{topic_prefix}-coord", topics=topics).start()
    try:
        sub.wait_ready(5)
        assert isinstance(sub.get(1), LinkUp)
        broker.restart(clean=clean)
        if not clean:
            # A killed broker saved nothing, so it only queues for the subscriber once it is back.
            sub.wait_ready(10)
        with Publisher([broker.url], fast) as pub:
            for i in range(5):
                pub.publish(f"{topic_prefix}/e", f"m{i}".encode())
        got = collect(sub.get, lambda xs: len(xs) >= 6, 10)  # 5 messages and the LinkUp, in any order
        assert [x.payload for x in got if isinstance(x, Message)] == [f"m{i}".encode() for i in range(5)]
        [again] = [x for x in got if isinstance(x, LinkUp)]
        # SIGTERM let mosquitto save the session (persistence true); SIGKILL lost it, and the
        # subscription was re-made on connect.
        assert again.session_present is clean
        assert sub.counters.snapshot().connects == 2
    finally:
        sub.stop()


def test_a_subscriber_started_while_its_broker_is_down_connects_when_it_comes_up(
    broker: MosquittoProcess, topic_prefix: str, fast: ClientSettings
) -> None:
    """start() does not fail while the broker is down; the subscriber connects once it is up."""
    broker.stop()
    sub = Subscriber(broker.url, fast, client_id=f"{topic_prefix}-c", topics=[f"{topic_prefix}/#"]).start()
    try:
        with pytest.raises(BrokerUnavailableError):
            sub.wait_ready(0.3)
        broker.start()
        sub.wait_ready(5)
        with Publisher([broker.url], fast) as pub:
            pub.publish(f"{topic_prefix}/e", b"late")
        assert payloads(sub, 1) == [b"late"]
    finally:
        sub.stop()


def test_an_exception_in_a_callback_is_logged_and_swallowed(caplog: pytest.LogCaptureFixture) -> None:
    """The guard around paho callbacks logs an exception instead of letting it end the network thread."""

    @guard
    def on_message(_x: int) -> None:
        raise RuntimeError("boom")

    on_message(1)
    assert "on_message failed" in caplog.text
    assert "boom" in caplog.text
