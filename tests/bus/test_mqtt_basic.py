"""The MQTT adapter against a real mosquitto: round trips, retained state, protocol fallback."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from startgate.bus.broker import MosquittoProcess
from startgate.bus.mqtt import ClientSettings, LinkUp, Message, Publisher, Subscriber
from startgate.bus.testing import V311OnlyProxy, collect
from startgate.errors import BrokerUnavailableError, TopicError

pytestmark = pytest.mark.broker


def messages(sub: Subscriber, n: int, timeout: float = 5.0) -> list[Message]:
    """The next `n` messages a subscriber hands out (LinkUp notices skipped)."""
    got = collect(sub.get, lambda xs: sum(isinstance(x, Message) for x in xs) >= n, timeout)
    return [x for x in got if isinstance(x, Message)]


@pytest.mark.parametrize("via", ["tcp", "unix"])
def test_publish_subscribe_round_trip(
    session_broker: MosquittoProcess, topic_prefix: str, fast: ClientSettings, via: str
) -> None:
    """A QoS 1 message published by a Publisher reaches a Subscriber byte for byte (TCP and unix socket)."""
    url = session_broker.url if via == "tcp" else session_broker.unix_url
    sub = Subscriber(url, fast, client_id=f"{topic_prefix}-sub", topics=[f"{topic_prefix}/#"]).start()
    try:
        sub.wait_ready(5)
        with Publisher([url], fast) as pub:
            assert pub.publish(f"{topic_prefix}/a", b"\x00hello\xff", timeout=5) == url
            assert pub.protocol == "5"
        [msg] = messages(sub, 1)
        assert (msg.topic, msg.payload, msg.retain, msg.broker) == (
            f"{topic_prefix}/a",
            b"\x00hello\xff",
            False,
            url,
        )
        assert sub.counters.snapshot().received == 1
        assert sub.protocol == "5"
    finally:
        sub.stop()


def test_link_up_notice_follows_each_connect(
    session_broker: MosquittoProcess, topic_prefix: str, fast: ClientSettings
) -> None:
    """Once subscribed, the subscriber queues a LinkUp naming its broker (the cue to republish state)."""
    sub = Subscriber(session_broker.url, fast, client_id=f"{topic_prefix}-sub", topics=[f"{topic_prefix}/#"])
    sub.start()
    try:
        sub.wait_ready(5)
        first = sub.get(timeout=2)
        assert isinstance(first, LinkUp)
        assert first.broker == session_broker.url
        assert sub.counters.snapshot().connects == 1
    finally:
        sub.stop()


def test_retained_state_reaches_a_late_subscriber(
    session_broker: MosquittoProcess, topic_prefix: str, fast: ClientSettings
) -> None:
    """Retained state published before anyone listened reaches a later subscriber, flagged retained."""
    with Publisher([session_broker.url], fast) as pub:
        pub.publish(f"{topic_prefix}/state/a", b"one", retain=True)
        pub.publish(f"{topic_prefix}/state/a", b"two", retain=True)
        pub.publish(f"{topic_prefix}/event", b"not kept")
    sub = Subscriber(session_broker.url, fast, client_id=f"{topic_prefix}-late", topics=[f"{topic_prefix}/#"])
    sub.start()
    try:
        sub.wait_ready(5)
        [msg] = messages(sub, 1)
        assert (msg.topic, msg.payload, msg.retain) == (f"{topic_prefix}/state/a", b"two", True)
        assert messages(sub, 1, timeout=0.3) == []
    finally:
        sub.stop()


def test_publishing_to_a_wildcard_or_empty_topic_is_refused(
    session_broker: MosquittoProcess, fast: ClientSettings
) -> None:
    """A topic with a wildcard, NUL or nothing in it is refused before anything is sent."""
    with Publisher([session_broker.url], fast) as pub:
        for bad in ["a/+/b", "a/#", "", "a\0b"]:
            with pytest.raises(TopicError):
                pub.publish(bad, b"x")


def test_auto_protocol_falls_back_to_3_1_1_for_a_broker_that_refuses_v5(
    session_broker: MosquittoProcess, topic_prefix: str, fast: ClientSettings
) -> None:
    """Behind a 3.1.1-only broker, "auto" clients fall back and deliver; strict v5 gets a clear error."""
    with V311OnlyProxy(session_broker.host, session_broker.port) as proxy:
        sub = Subscriber(
            proxy.url, fast, client_id=f"{topic_prefix}-sub", topics=[f"{topic_prefix}/#"]
        ).start()
        try:
            sub.wait_ready(5)
            assert sub.protocol == "3.1.1"
            with Publisher([proxy.url], fast) as pub:
                pub.publish(f"{topic_prefix}/x", b"via 3.1.1")
                assert pub.protocol == "3.1.1"
            [msg] = messages(sub, 1)
            assert msg.payload == b"via 3.1.1"
        finally:
            sub.stop()
        assert proxy.refused_v5 >= 2
        with (
            Publisher([proxy.url], replace(fast, protocol="5")) as strict,
            pytest.raises(BrokerUnavailableError) as exc,
        ):
            strict.publish(f"{topic_prefix}/x", b"v5 only", timeout=3)
        assert "Unsupported protocol version" in str(exc.value)


def test_paho_noise_after_a_clean_disconnect_is_not_printed(caplog: pytest.LogCaptureFixture) -> None:
    """paho's "Client is not connected" ERROR after a clean disconnect is dropped unless DEBUG is on."""
    noisy = logging.getLogger("startgate.bus.paho")
    with caplog.at_level(logging.WARNING, logger="startgate.bus.paho"):
        noisy.error("Client is not connected. Socket: None")
        noisy.error("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="startgate.bus.paho"):
        noisy.error("Client is not connected. Socket: None")
    assert [r.levelname for r in caplog.records] == ["DEBUG"]
