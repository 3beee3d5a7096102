"""Several brokers, brokers that do not answer, TLS with passwords, and ACL refusals."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from startgate.bus.broker import MosquittoProcess, TlsFiles, free_port, write_password_file
from startgate.bus.mqtt import (
    ClientSettings,
    Message,
    Publisher,
    Subscriber,
    SubscriberGroup,
    publisher_from_config,
    subscribers_from_config,
)
from startgate.bus.testing import BlackHole, TlsMaterial, collect, make_tls_files
from startgate.config import Bus
from startgate.errors import (
    BrokerProcessError,
    BrokerUnavailableError,
    NotAuthorizedError,
    PublishTimeoutError,
)

pytestmark = pytest.mark.broker


def payloads(get: Subscriber | SubscriberGroup, n: int, timeout: float = 5.0) -> list[bytes]:
    """The payloads of the next `n` messages (LinkUp notices skipped)."""
    got = collect(get.get, lambda xs: sum(isinstance(x, Message) for x in xs) >= n, timeout)
    return [x.payload for x in got if isinstance(x, Message)]


def test_publisher_uses_the_first_broker_that_answers(
    session_broker: MosquittoProcess, topic_prefix: str, fast: ClientSettings
) -> None:
    """With the first broker down (refused) and the second a black hole, the third gets the message."""
    down = f"mqtt://127.0.0.1:{free_port()}"
    sub = Subscriber(session_broker.url, fast, client_id=f"{topic_prefix}-s", topics=[f"{topic_prefix}/#"])
    sub.start().wait_ready(5)
    try:
        with BlackHole() as hole, Publisher([down, hole.url, session_broker.url], fast) as pub:
            assert pub.publish(f"{topic_prefix}/e", b"third", timeout=5) == session_broker.url
            assert pub.broker == session_broker.url
        assert payloads(sub, 1) == [b"third"]
    finally:
        sub.stop()


def test_subscriber_group_reads_and_writes_every_broker(
    session_broker: MosquittoProcess, broker: MosquittoProcess, topic_prefix: str, fast: ClientSettings
) -> None:
    """One group on two brokers receives what is published to either, and writes retained state to both."""
    urls = [session_broker.url, broker.url]
    group = SubscriberGroup(urls, fast, client_id=f"{topic_prefix}-coord", topics=[f"{topic_prefix}/#"])
    group.start().wait_ready(5)
    try:
        for url in urls:
            with Publisher([url], fast) as pub:
                pub.publish(f"{topic_prefix}/e", url.encode())
        assert sorted(payloads(group, 2)) == sorted(u.encode() for u in urls)
        report = group.publish_all(f"{topic_prefix}/state", b"leader", retain=True)
        assert report.ok
        assert sorted(report.acked) == sorted(urls)
        assert report.failed == ()
        for url in urls:
            late = Subscriber(url, fast, client_id=f"{topic_prefix}-late", topics=[f"{topic_prefix}/state"])
            try:
                late.start().wait_ready(5)
                assert payloads(late, 1) == [b"leader"]
            finally:
                late.stop()
    finally:
        group.stop()


def test_publish_all_reports_a_broker_that_is_down(
    session_broker: MosquittoProcess, broker: MosquittoProcess, topic_prefix: str, fast: ClientSettings
) -> None:
    """With one broker killed, publish_all still writes to the other and names the one it could not."""
    group = SubscriberGroup([session_broker.url, broker.url], fast, client_id=f"{topic_prefix}-c")
    group.start().wait_ready(5)
    try:
        broker.kill()
        deadline = time.monotonic() + 5
        while group.subscribers[1].connected and time.monotonic() < deadline:
            time.sleep(0.02)
        report = group.publish_all(f"{topic_prefix}/state", b"x", retain=True, timeout=2)
        assert report.acked == (session_broker.url,)
        [(url, err)] = report.failed
        assert url == broker.url
        assert isinstance(err, BrokerUnavailableError)
    finally:
        group.stop()


@pytest.mark.parametrize("timeout", [0.3, 3.0])
def test_publish_to_a_port_that_never_answers_ends_in_time(
    topic_prefix: str, fast: ClientSettings, timeout: float
) -> None:
    """A broker that accepts TCP and says nothing costs at most the publish timeout (or connect timeout)."""
    settings = replace(fast, connect_timeout_s=1.0)
    with BlackHole() as hole, Publisher([hole.url], settings) as pub:
        start = time.monotonic()
        with pytest.raises((BrokerUnavailableError, PublishTimeoutError)):
            pub.publish(f"{topic_prefix}/e", b"x", timeout=timeout)
        assert time.monotonic() - start < min(timeout, settings.connect_timeout_s) + 1.0


def test_publish_to_a_stalled_broker_times_out(
    broker: MosquittoProcess, topic_prefix: str, fast: ClientSettings
) -> None:
    """A connected broker that stops answering (SIGSTOP) gives PublishTimeoutError, and the next
    publish after it resumes goes through."""
    assert broker.pid is not None
    with Publisher([broker.url], fast) as pub:
        pub.connect()
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            with pytest.raises(PublishTimeoutError):
                pub.publish(f"{topic_prefix}/e", b"x", timeout=0.5)
        finally:
            os.kill(broker.pid, signal.SIGCONT)
        assert pub.publish(f"{topic_prefix}/e", b"y", timeout=5) == broker.url


# -- TLS and passwords --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    """A throwaway CA with server and client certificates."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_broker(
    tmp_path_factory: pytest.TempPathFactory, tls: TlsMaterial, mosquitto_binary: str
) -> Iterator[MosquittoProcess]:
    """A mosquitto that wants TLS, a client certificate from our CA, and a user name and password."""
    work = tmp_path_factory.mktemp("mosquitto-tls")
    passwd = write_password_file(work / "passwd", {"coordinator": "s3cret", "node1": "other"})
    files = TlsFiles(tls.server_cert, tls.server_key, cafile=tls.ca_cert, require_certificate=True)
    proc = MosquittoProcess(work, tls=files, password_file=passwd, binary=mosquitto_binary)
    try:
        proc.start()
    except BrokerProcessError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield proc
    proc.stop()


def tls_bus(proc: MosquittoProcess, tls: TlsMaterial, tmp_path: Path, password: str) -> Bus:
    """A [bus] config section for the TLS broker, with the password in a 0600 file."""
    secret = tmp_path / "bus-password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    return Bus(
        brokers=[proc.url],
        username="coordinator",
        password_file=secret,
        tls_ca=tls.ca_cert,
        tls_cert=tls.client_cert,
        tls_key=tls.client_key,
    )


def test_tls_with_client_certificate_and_password_from_config_works(
    tls_broker: MosquittoProcess, tls: TlsMaterial, tmp_path: Path, topic_prefix: str
) -> None:
    """Clients built from a [bus] config (CA, client cert, password file) talk to a TLS broker."""
    assert tls_broker.url.startswith("mqtts://")
    bus = tls_bus(tls_broker, tls, tmp_path, "s3cret")
    group = subscribers_from_config(bus, client_id=f"{topic_prefix}-c", topics=[f"{topic_prefix}/#"])
    group.start().wait_ready(5)
    try:
        with publisher_from_config(bus) as pub:
            pub.publish(f"{topic_prefix}/e", b"over tls")
        assert payloads(group, 1) == [b"over tls"]
    finally:
        group.stop()


def test_wrong_password_is_not_authorized(
    tls_broker: MosquittoProcess, tls: TlsMaterial, tmp_path: Path, topic_prefix: str, fast: ClientSettings
) -> None:
    """A wrong password gives NotAuthorizedError, to a publisher and to a subscriber."""
    bus = tls_bus(tls_broker, tls, tmp_path, "wrong")
    with publisher_from_config(bus) as pub, pytest.raises(NotAuthorizedError):
        pub.publish(f"{topic_prefix}/e", b"x")
    sub = subscribers_from_config(
        bus, client_id=f"{topic_prefix}-c", topics=["#"], reconnect_min_s=0.05, reconnect_max_s=0.2
    )
    try:
        with pytest.raises(NotAuthorizedError):
            sub.start().wait_ready(1)
    finally:
        sub.stop()


def test_a_broker_certificate_from_another_ca_is_refused(
    tls_broker: MosquittoProcess, tls: TlsMaterial, tmp_path: Path, topic_prefix: str
) -> None:
    """A server certificate the configured CA did not sign makes the broker unavailable, not trusted."""
    other = make_tls_files(tmp_path / "other-ca")
    bus = tls_bus(tls_broker, tls, tmp_path, "s3cret").model_copy(update={"tls_ca": other.ca_cert})
    with publisher_from_config(bus) as pub, pytest.raises(BrokerUnavailableError) as exc:
        pub.publish(f"{topic_prefix}/e", b"x")
    assert "certificate verify failed" in str(exc.value)


# -- ACLs ---------------------------------------------------------------------------------------


@pytest.fixture
def acl_broker(tmp_path: Path, mosquitto_binary: str) -> Iterator[MosquittoProcess]:
    """An anonymous mosquitto whose ACL lets clients write only under acl/ok/."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite acl/ok/#\n")
    proc = MosquittoProcess(tmp_path / "m", acl_file=acl, binary=mosquitto_binary).start()
    yield proc
    proc.stop()


def test_acl_denied_publish_is_not_authorized_under_v5(
    acl_broker: MosquittoProcess, fast: ClientSettings
) -> None:
    """Under MQTT v5 the PUBACK of an ACL-denied publish says so: NotAuthorizedError."""
    with Publisher([acl_broker.url], replace(fast, protocol="5")) as pub:
        pub.publish("acl/ok/x", b"fine")
        with pytest.raises(NotAuthorizedError, match="Not authorized"):
            pub.publish("acl/denied/x", b"refused")


def test_acl_denied_publish_is_silently_acknowledged_under_3_1_1(
    acl_broker: MosquittoProcess, fast: ClientSettings
) -> None:
    """The 3.1.1 trap, pinned: the broker acknowledges an ACL-denied publish and drops it."""
    with Publisher([acl_broker.url], replace(fast, protocol="3.1.1")) as pub:
        assert pub.publish("acl/denied/x", b"lost") == acl_broker.url
