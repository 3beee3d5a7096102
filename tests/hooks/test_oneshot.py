"""The one-shot MQTT client against a real Mosquitto (and against brokers that misbehave)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from startgate.bus.broker import MosquittoProcess, free_port, write_password_file
from startgate.bus.oneshot import (
    V5,
    V311,
    BrokerAddress,
    Connection,
    Deadline,
    LinkOptions,
    Outgoing,
    Will,
    connect_first,
    resolve,
)
from startgate.bus.testing import BlackHole, V311OnlyProxy
from startgate.errors import BrokerUnavailableError, BusError, NotAuthorizedError, PublishTimeoutError

pytestmark = pytest.mark.broker


def opts(*urls: str, **kw: object) -> LinkOptions:
    """Link options for these broker URLs."""
    return LinkOptions(brokers=tuple(BrokerAddress.parse(u) for u in urls), **kw)  # type: ignore[arg-type]  # test shorthand


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoProcess]:
    """A broker with users, an ACL and a unix socket listener."""
    work = tmp_path_factory.mktemp("secured")
    acl = work / "acl"
    acl.write_text(
        "user hook\ntopic readwrite sg/ok/#\ntopic read sg/ro/#\n\nuser admin\ntopic readwrite #\n"
    )
    users = write_password_file(work / "passwd", {"hook": "hookpw", "admin": "adminpw"})
    broker = MosquittoProcess(work / "m", password_file=users, acl_file=acl, unix_socket=True).start()
    yield broker
    broker.stop()


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_deadline_arithmetic() -> None:
    """remaining/expired/within follow the injected clock; within never extends a deadline."""
    clock = FakeClock()
    d = Deadline(2.0, clock)
    assert d.remaining() == 2.0
    assert d.within(5).remaining() == 2.0
    assert d.within(0.5).remaining() == 0.5
    clock.now += 3
    assert d.expired()
    assert d.remaining() == 0.0


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("mqtt://127.0.0.1", ("mqtt", "127.0.0.1", 1883, "")),
        ("mqtts://broker.example:8884", ("mqtts", "broker.example", 8884, "")),
        ("mqtt://[::1]:1884", ("mqtt", "::1", 1884, "")),
        ("unix:///run/mosquitto/mqtt.sock", ("unix", "", 0, "/run/mosquitto/mqtt.sock")),
    ],
)
def test_broker_urls(url: str, parsed: tuple[str, str, int, str]) -> None:
    """bus.brokers entries parse into scheme, host, port, path."""
    assert tuple(BrokerAddress.parse(url)) == parsed


def test_bad_broker_url() -> None:
    """A URL of another scheme is refused with the URL named."""
    with pytest.raises(BusError, match="'http://x'"):
        BrokerAddress.parse("http://x")


@pytest.mark.parametrize("protocol", ["auto", "5", "3.1.1"])
def test_publish_then_read_retained(mosquitto: MosquittoProcess, protocol: str) -> None:
    """QoS 1 publishes are acked; the retained ones come back through the PINGREQ barrier."""
    base = f"sg/rt-{protocol}"
    conn = connect_first(opts(mosquitto.url, protocol=protocol), Deadline(3))
    assert conn.version == (V311 if protocol == "3.1.1" else V5)
    msgs = [Outgoing(f"{base}/{i}", f"payload {i}".encode() * 50, retain=True) for i in range(200)]
    conn.publish(
        [*msgs, Outgoing(f"{base}/cleared", b"x", True), Outgoing(f"{base}/cleared", b"", True)], Deadline(5)
    )
    conn.close()
    conn = connect_first(opts(mosquitto.url, protocol=protocol), Deadline(3))
    found, denied = conn.retained([f"{base}/#", "sg/none/+"], Deadline(3))
    conn.close()
    assert denied == set()
    assert found == {m.topic: m.payload for m in msgs}


def test_first_broker_that_answers_wins(mosquitto: MosquittoProcess) -> None:
    """A closed port first in the list costs nothing: the next broker is used."""
    closed = f"mqtt://127.0.0.1:{free_port()}"
    conn = connect_first(opts(closed, mosquitto.url), Deadline(2))
    assert conn.broker.port == mosquitto.port
    conn.close()


def test_no_broker_answers() -> None:
    """Every broker refusing: one BrokerUnavailableError naming each."""
    a, b = free_port(), free_port()
    with pytest.raises(BrokerUnavailableError, match=rf"no broker answered: .*:{a}: .*; .*:{b}: "):
        connect_first(opts(f"mqtt://127.0.0.1:{a}", f"mqtt://127.0.0.1:{b}"), Deadline(2))


def test_black_hole_broker_times_out_at_the_deadline() -> None:
    """A broker that accepts TCP and never sends CONNACK costs the deadline, no more."""
    hole = BlackHole()
    try:
        start = time.monotonic()
        with pytest.raises(BrokerUnavailableError, match="no CONNACK in time"):
            connect_first(opts(f"mqtt://127.0.0.1:{hole.port}"), Deadline(0.3))
        assert time.monotonic() - start < 1.0  # generous: the point is that it returns at all
    finally:
        hole.close()


def test_credentials_and_acl(secured: MosquittoProcess) -> None:
    """Bad password: NotAuthorizedError; a publish the ACL denies: NotAuthorizedError under MQTT 5."""
    with pytest.raises(NotAuthorizedError, match="not authorized"):
        connect_first(opts(secured.url, username="hook", password="wrong"), Deadline(2))
    conn = Connection.open(
        opts(secured.url).brokers[0], opts(secured.url, username="hook", password="hookpw"), Deadline(2)
    )
    conn.publish([Outgoing("sg/ok/a", b"fine", True)], Deadline(2))
    with pytest.raises(NotAuthorizedError, match="sg/ro/a refused"):
        conn.publish([Outgoing("sg/ro/a", b"denied", True)], Deadline(2))
    conn.close()


def test_bad_password_is_not_authorized_on_one_broker(secured: MosquittoProcess) -> None:
    """Connection.open on one broker raises NotAuthorizedError for bad credentials."""
    with pytest.raises(NotAuthorizedError):
        Connection.open(
            BrokerAddress.parse(secured.url), opts(secured.url, username="hook", password="nope"), Deadline(2)
        )


def test_denied_subscription_is_reported(secured: MosquittoProcess) -> None:
    """A filter the ACL does not allow reading is listed as denied (MQTT 5 SUBACK code)."""
    admin = connect_first(opts(secured.url, username="admin", password="adminpw"), Deadline(2))
    admin.publish(
        [Outgoing("sg/ok/b", b"mine", True), Outgoing("other/secret", b"theirs", True)], Deadline(2)
    )
    admin.close()
    conn = connect_first(opts(secured.url, username="hook", password="hookpw"), Deadline(2))
    found, denied = conn.retained(["sg/ok/b", "other/#"], Deadline(2))
    conn.close()
    # Mosquitto 2.0 grants the subscription and filters by ACL on delivery; a broker that refuses
    # it in the SUBACK lands in `denied`. Either way nothing from other/# arrives.
    assert found == {"sg/ok/b": b"mine"}
    assert denied <= {"other/#"}


def test_unix_socket_broker(secured: MosquittoProcess) -> None:
    """unix:///path brokers work (the node-local broker without TCP)."""
    url = f"unix://{secured.unix_socket}"
    conn = connect_first(opts(url, username="admin", password="adminpw"), Deadline(2))
    conn.publish([Outgoing("sg/unix", b"1", False)], Deadline(2))
    conn.close()


def test_last_will_fires_on_abort_not_on_close(mosquitto: MosquittoProcess) -> None:
    """abort() (no DISCONNECT) makes the broker publish the Will; close() does not."""
    will = Will("sg/will/a", b"offline", retain=True)
    conn = connect_first(opts(mosquitto.url), Deadline(2), will=will)
    conn.close()
    reader = connect_first(opts(mosquitto.url), Deadline(2))
    assert reader.retained(["sg/will/a"], Deadline(2))[0] == {}
    conn = connect_first(opts(mosquitto.url), Deadline(2), will=will)
    conn.abort()
    for _ in range(50):
        found = connect_first(opts(mosquitto.url), Deadline(2)).retained(["sg/will/a"], Deadline(2))[0]
        if found:
            break
        threading.Event().wait(0.02)
    assert found == {"sg/will/a": b"offline"}
    reader.close()


def test_falls_back_to_311_when_v5_is_refused(mosquitto: MosquittoProcess) -> None:
    """protocol=auto tries MQTT 5, then 3.1.1 on 'unacceptable protocol version'; protocol=5 fails."""
    with V311OnlyProxy("127.0.0.1", mosquitto.port) as proxy:
        conn = connect_first(opts(proxy.url), Deadline(2))
        assert conn.version == V311
        conn.publish([Outgoing("sg/v311", b"x", False)], Deadline(2))
        conn.close()
        assert proxy.refused_v5 == 1
        with pytest.raises(BrokerUnavailableError, match="refused MQTT 5"):
            connect_first(opts(proxy.url, protocol="5"), Deadline(2))


def test_publish_without_ack_times_out() -> None:
    """A broker that acks CONNECT and then goes silent: PublishTimeoutError at the deadline."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def serve() -> None:
        conn, _ = srv.accept()
        conn.recv(1024)
        conn.sendall(bytes([0x20, 3, 0, 0, 0]))
        threading.Event().wait(2)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    conn = connect_first(opts(f"mqtt://127.0.0.1:{port}", protocol="5"), Deadline(2))
    with pytest.raises(PublishTimeoutError):
        conn.publish([Outgoing("a", b"x", False)], Deadline(0.2))
    conn.abort()
    srv.close()


def test_resolve_is_bounded() -> None:
    """IP literals resolve without DNS; an unknown name fails instead of hanging."""
    assert resolve("127.0.0.1", 1, Deadline(1)) == [(socket.AF_INET, ("127.0.0.1", 1))]
    assert resolve("::1", 2, Deadline(1)) == [(socket.AF_INET6, ("::1", 2))]
    with pytest.raises(OSError):  # noqa: PT011 - gaierror or TimeoutError, both OSErrors
        resolve("no-such-host.invalid", 1, Deadline(1))
