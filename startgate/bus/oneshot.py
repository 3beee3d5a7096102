"""A minimal synchronous MQTT client: stdlib sockets only, every operation bounded by one deadline.

Why it exists instead of paho:
- `paho.mqtt.publish.single()` has no timeout and blocks forever against a broker that accepts
  TCP and never answers (design.md, Facts); the hookscript must end within `hook.max_seconds`
  whatever is down.
- `import paho.mqtt.client` alone costs 75-120 ms on a node, most of the hook's 100 ms budget.

What it speaks (MQTT 5, falling back to 3.1.1 when the broker refuses v5 and `protocol` is auto):
CONNECT (username/password, optional Last Will, optional TLS, unix sockets), SUBSCRIBE with a
PINGREQ/PINGRESP round trip as the barrier after which every retained message of the new
subscriptions has arrived (the broker queues them in order after the SUBACK and before it
answers the later PINGREQ; checked against Mosquitto 2.0 in tests/bus/test_oneshot.py), PUBLISH
QoS 1 waiting for each PUBACK (v5 reason codes >= 0x80, e.g. 0x87 Not authorized, are failures;
3.1.1 cannot report them), and a clean DISCONNECT. Host names are resolved in a helper thread so
a hanging DNS server cannot outlast the deadline either.

Errors are startgate's: BrokerUnavailableError, NotAuthorizedError, PublishTimeoutError.
Imports are kept to what the hot path needs; ssl and threading load only when used.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, NamedTuple

from startgate.deadline import Deadline
from startgate.errors import BrokerUnavailableError, BusError, NotAuthorizedError, PublishTimeoutError

if TYPE_CHECKING:
    from collections.abc import Iterable

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 12, 13, 14
V5, V311 = 5, 4
_REFUSED_VERSION = {0x01, 0x84}  # 3.1.1 "unacceptable protocol version" / v5 "unsupported protocol version"
_AUTH_CODES_V5 = {0x86, 0x87}
_AUTH_CODES_V311 = {0x04, 0x05}
_MAX_PACKET = 1 << 20
__all__ = [
    "BrokerAddress",
    "Connection",
    "Deadline",
    "LinkOptions",
    "Outgoing",
    "Will",
    "connect_first",
    "resolve",
]
_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class BrokerAddress(NamedTuple):
    """Where a broker listens: `mqtt://host:port`, `mqtts://host:port` or `unix:///path`."""

    scheme: str
    host: str
    port: int
    path: str = ""

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """Parse a broker URL as bus.brokers holds them (validated by the config model already)."""
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in {"mqtt", "mqtts", "unix"}:
            raise BusError(f"broker {url!r}: use mqtt://host[:port], mqtts://host[:port] or unix:///path")
        if scheme == "unix":
            return cls(scheme, "", 0, rest)
        hostport = rest.split("/", 1)[0].rpartition("@")[2]
        default = 8883 if scheme == "mqtts" else 1883
        if hostport.startswith("["):  # [v6]:port
            host, _, tail = hostport[1:].partition("]")
            port = tail[1:] if tail.startswith(":") else ""
        elif hostport.count(":") == 1:
            host, _, port = hostport.partition(":")
        else:
            host, port = hostport, ""
        if not host or (port and not port.isdecimal()):
            raise BusError(f"broker {url!r}: bad host or port")
        return cls(scheme, host, int(port) if port else default, "")

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


class LinkOptions(NamedTuple):
    """How to talk to the brokers: credentials, TLS files, protocol, keepalive, client id prefix."""

    brokers: tuple[BrokerAddress, ...]
    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    protocol: str = "auto"  # "auto", "5" or "3.1.1"
    keepalive: int = 30
    client_prefix: str = "startgate"


class Outgoing(NamedTuple):
    """A message to publish with QoS 1."""

    topic: str
    payload: bytes
    retain: bool = False


class Will(NamedTuple):
    """A Last Will: published (QoS 1) by the broker when the connection ends uncleanly."""

    topic: str
    payload: bytes
    retain: bool = True


# -- encoding ------------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    raw = s.encode()
    return len(raw).to_bytes(2, "big") + raw


def _bin(b: bytes) -> bytes:
    return len(b).to_bytes(2, "big") + b


def _packet(ptype: int, flags: int, body: bytes) -> bytes:
    return bytes([(ptype << 4) | flags]) + _varint(len(body)) + body


def connect_packet(
    client_id: str, version: int, opts: LinkOptions, will: Will | None = None, clean: bool = True
) -> bytes:
    """The CONNECT packet (clean start; no session expiry, so the broker keeps nothing after us)."""
    flags = 0x02 if clean else 0
    payload = _str(client_id)
    if will is not None:
        flags |= 0x04 | (1 << 3) | (0x20 if will.retain else 0)  # will, will QoS 1, will retain
        payload += (b"\x00" if version == V5 else b"") + _str(will.topic) + _bin(will.payload)
    if opts.username is not None:
        flags |= 0x80
        payload += _str(opts.username)
        if opts.password is not None:
            flags |= 0x40
            payload += _bin(opts.password.encode())
    header = _str("MQTT") + bytes([version, flags]) + opts.keepalive.to_bytes(2, "big")
    if version == V5:
        header += b"\x00"  # no properties
    return _packet(CONNECT, 0, header + payload)


def publish_packet(msg: Outgoing, packet_id: int, version: int) -> bytes:
    """A QoS 1 PUBLISH packet."""
    body = _str(msg.topic) + packet_id.to_bytes(2, "big") + (b"\x00" if version == V5 else b"") + msg.payload
    return _packet(PUBLISH, 0x02 | (0x01 if msg.retain else 0), body)


def subscribe_packet(filters: Iterable[str], packet_id: int, version: int) -> bytes:
    """A SUBSCRIBE packet for QoS 0; under v5 with no-local and retain-as-published."""
    body = packet_id.to_bytes(2, "big") + (b"\x00" if version == V5 else b"")
    for f in filters:
        body += _str(f) + (b"\x0c" if version == V5 else b"\x00")
    return _packet(SUBSCRIBE, 0x02, body)


# -- one connection ------------------------------------------------------------------------------
def _is_ip(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return True
    return False


def resolve(host: str, port: int, deadline: Deadline) -> list[tuple[int, tuple[str, int]]]:
    """getaddrinfo bounded by `deadline` (it has no timeout of its own: it runs in a helper thread)."""
    if _is_ip(host):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return [(family, (host, port))]
    import threading  # noqa: PLC0415 - only names need it; IP literals stay on the fast path

    box: list[object] = []
    done = threading.Event()

    def work() -> None:
        try:
            box.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            box.append(exc)
        done.set()

    threading.Thread(target=work, name="resolve", daemon=True).start()
    if not done.wait(deadline.remaining()):
        raise TimeoutError(f"no DNS answer for {host!r}")
    result = box[0]
    if isinstance(result, OSError):
        raise result
    assert isinstance(result, list)  # work() appends a list or an OSError
    return [(fam, (addr[0], addr[1])) for fam, _, _, _, addr in result]


class Connection:
    """One open MQTT connection; use `Connection.open` (or `connect_first`) to get one."""

    def __init__(self, sock: socket.socket, version: int, broker: BrokerAddress) -> None:
        self.sock = sock
        self.version = version
        self.broker = broker
        self._buf = bytearray()
        self._next_id = 0
        tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
        self._quickack: int | None = _TCP_QUICKACK if tcp else None

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        broker: BrokerAddress,
        opts: LinkOptions,
        deadline: Deadline,
        will: Will | None = None,
        client_id: str | None = None,
    ) -> Connection:
        """Connect to one broker; v5 first, 3.1.1 if it refuses v5 and the protocol is auto."""
        cid = client_id or f"{opts.client_prefix}-{os.getpid()}-{os.urandom(4).hex()}"
        versions = {"5": [V5], "3.1.1": [V311]}.get(opts.protocol, [V5, V311])
        last: BusError | None = None
        for version in versions:
            try:
                return cls._open_once(broker, opts, deadline, will=will, client_id=cid, version=version)
            except _VersionRefusedError as exc:
                last = BrokerUnavailableError(f"{broker}: {exc}")
        assert last is not None  # the loop ran at least once
        raise last

    @classmethod
    def _open_once(
        cls,
        broker: BrokerAddress,
        opts: LinkOptions,
        deadline: Deadline,
        *,
        will: Will | None,
        client_id: str,
        version: int,
    ) -> Connection:
        sock = _dial(broker, opts, deadline)
        conn = cls(sock, version, broker)
        try:
            conn._send(connect_packet(client_id, version, opts, will), deadline)
            try:
                ptype, _, body = conn._read(deadline)
            except TimeoutError:
                raise BrokerUnavailableError(f"{broker}: no CONNACK in time") from None
            except BrokerUnavailableError as exc:
                if version == V5 and "closed" in str(exc):
                    raise _VersionRefusedError("closed the connection after an MQTT 5 CONNECT") from None
                raise
            _check_connack(broker, version, ptype, body)
        except BaseException:
            conn.abort()
            raise
        return conn

    # -- operations --------------------------------------------------------------------------
    def retained(self, filters: list[str], deadline: Deadline) -> tuple[dict[str, bytes], set[str]]:
        """Subscribe to `filters` and collect their retained messages; also the filters that were denied.

        A PINGREQ sent right after the SUBSCRIBE is the barrier: when its PINGRESP arrives, every
        retained message for the subscriptions has arrived before it. Empty payloads are dropped.
        """
        if not filters:
            return {}, set()
        try:
            return self._retained(filters, deadline)
        except TimeoutError:
            raise BrokerUnavailableError(f"{self.broker}: retained messages not delivered in time") from None

    def _retained(self, filters: list[str], deadline: Deadline) -> tuple[dict[str, bytes], set[str]]:
        pid = self._packet_id()
        self._send(subscribe_packet(filters, pid, self.version) + _packet(PINGREQ, 0, b""), deadline)
        found: dict[str, bytes] = {}
        denied: set[str] = set()
        while True:
            ptype, flags, body = self._read(deadline)
            if ptype == PUBLISH:
                topic, payload = self._incoming(flags, body, deadline)
                if payload:
                    found[topic] = payload
                else:
                    found.pop(topic, None)
            elif ptype == SUBACK:
                codes = body[2:]
                if self.version == V5:
                    plen, used = _read_varint(codes)
                    codes = codes[used + plen :]
                denied.update(f for f, c in zip(filters, codes, strict=False) if c >= 0x80)
            elif ptype == PINGRESP:
                return found, denied
            elif ptype == DISCONNECT:
                raise BrokerUnavailableError(f"{self.broker}: the broker disconnected us")

    def publish(self, messages: list[Outgoing], deadline: Deadline) -> None:
        """Publish `messages` with QoS 1 (pipelined) and wait until the broker acknowledged each one."""
        waiting: dict[int, Outgoing] = {}
        data = bytearray()
        for msg in messages:
            pid = self._packet_id()
            waiting[pid] = msg
            data += publish_packet(msg, pid, self.version)
        try:
            self._send(bytes(data), deadline)
            while waiting:
                ptype, flags, body = self._read(deadline)
                if ptype == PUBACK and len(body) >= 2:
                    sent = waiting.pop(int.from_bytes(body[:2], "big"), None)
                    code = body[2] if self.version == V5 and len(body) > 2 else 0
                    if sent is not None and code >= 0x80:
                        exc_type = NotAuthorizedError if code == 0x87 else BusError
                        raise exc_type(f"{self.broker}: publish to {sent.topic} refused (code 0x{code:02x})")
                elif ptype == PUBLISH:
                    self._incoming(flags, body, deadline)
                elif ptype == DISCONNECT:
                    raise BrokerUnavailableError(f"{self.broker}: the broker disconnected us")
        except TimeoutError:
            raise PublishTimeoutError(
                f"{self.broker}: {len(waiting)} publish(es) not acknowledged in time"
            ) from None

    def ping(self, deadline: Deadline) -> None:
        """One PINGREQ/PINGRESP round trip (keeps a long connection alive and proves it works)."""
        try:
            self._ping(deadline)
        except TimeoutError:
            raise BrokerUnavailableError(f"{self.broker}: no PINGRESP in time") from None

    def _ping(self, deadline: Deadline) -> None:
        self._send(_packet(PINGREQ, 0, b""), deadline)
        while True:
            ptype, flags, body = self._read(deadline)
            if ptype == PINGRESP:
                return
            if ptype == PUBLISH:
                self._incoming(flags, body, deadline)
            elif ptype == DISCONNECT:
                raise BrokerUnavailableError(f"{self.broker}: the broker disconnected us")

    def close(self, deadline: Deadline | None = None) -> None:
        """Send DISCONNECT (a clean end: the Last Will is not published) and close the socket."""
        try:
            self.sock.settimeout(min(0.2, deadline.remaining()) if deadline else 0.2)
            self.sock.sendall(_packet(DISCONNECT, 0, b""))
        except OSError:
            pass
        self.abort()

    def abort(self) -> None:
        """Close the socket without DISCONNECT (the broker then publishes the Last Will)."""
        _close_quietly(self.sock)

    # -- plumbing ----------------------------------------------------------------------------
    def _packet_id(self) -> int:
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    def _incoming(self, flags: int, body: bytes, deadline: Deadline) -> tuple[str, bytes]:
        tlen = int.from_bytes(body[:2], "big")
        topic = body[2 : 2 + tlen].decode("utf-8", "replace")
        pos = 2 + tlen
        qos = (flags >> 1) & 3
        if qos:
            pid = body[pos : pos + 2]
            pos += 2
            self._send(_packet(PUBACK, 0, pid), deadline)  # we subscribe at QoS 0; be polite anyway
        if self.version == V5:
            plen, used = _read_varint(body[pos:])
            pos += used + plen
        return topic, bytes(body[pos:])

    def _send(self, data: bytes, deadline: Deadline) -> None:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise TimeoutError("deadline passed")
        try:
            self.sock.settimeout(remaining)
            self.sock.sendall(data)
        except TimeoutError:
            raise
        except OSError as exc:
            raise BrokerUnavailableError(f"{self.broker}: send failed: {exc}") from None

    def _fill(self, need: int, deadline: Deadline) -> None:
        while len(self._buf) < need:
            remaining = deadline.remaining()
            if remaining <= 0:
                raise TimeoutError(f"{self.broker}: no answer in time")
            try:
                self.sock.settimeout(remaining)
                if self._quickack is not None:
                    # Mosquitto leaves Nagle on (set_tcp_nodelay false): its second small answer
                    # (PINGRESP after SUBACK, the next PUBACK) waits for our ACK of the first, which
                    # Linux delays by up to 40 ms. Ask for an immediate ACK before every read.
                    self.sock.setsockopt(socket.IPPROTO_TCP, self._quickack, 1)
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise TimeoutError(f"{self.broker}: no answer in time") from None
            except OSError as exc:
                raise BrokerUnavailableError(f"{self.broker}: receive failed: {exc}") from None
            if not chunk:
                raise BrokerUnavailableError(f"{self.broker}: the broker closed the connection")
            self._buf += chunk

    def _read(self, deadline: Deadline) -> tuple[int, int, bytes]:
        self._fill(2, deadline)
        length, pos, mult = 0, 1, 1
        while True:
            self._fill(pos + 1, deadline)
            byte = self._buf[pos]
            length += (byte & 0x7F) * mult
            mult *= 128
            pos += 1
            if not byte & 0x80:
                break
            if pos > 4:
                raise BrokerUnavailableError(f"{self.broker}: malformed packet length")
        if length > _MAX_PACKET:
            raise BrokerUnavailableError(f"{self.broker}: packet of {length} bytes is too large")
        self._fill(pos + length, deadline)
        first = self._buf[0]
        body = bytes(self._buf[pos : pos + length])
        del self._buf[: pos + length]
        return first >> 4, first & 0x0F, body


def _check_connack(broker: BrokerAddress, version: int, ptype: int, body: bytes) -> None:
    if ptype != CONNACK or len(body) < 2:
        raise BrokerUnavailableError(f"{broker}: expected CONNACK, got packet type {ptype}")
    code = body[1]
    if code in _REFUSED_VERSION and version == V5:
        raise _VersionRefusedError(f"refused MQTT 5 (code 0x{code:02x})")
    if code in (_AUTH_CODES_V5 if version == V5 else _AUTH_CODES_V311):
        raise NotAuthorizedError(f"{broker}: not authorized (CONNACK code 0x{code:02x})")
    if code != 0:
        raise BrokerUnavailableError(f"{broker}: refused the connection (CONNACK code 0x{code:02x})")


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        return


class _VersionRefusedError(Exception):
    """The broker refused MQTT 5 (retry with 3.1.1)."""


def _read_varint(data: bytes) -> tuple[int, int]:
    value, mult = 0, 1
    for i, byte in enumerate(data[:4]):
        value += (byte & 0x7F) * mult
        mult *= 128
        if not byte & 0x80:
            return value, i + 1
    raise BrokerUnavailableError("malformed variable byte integer")


def _dial(broker: BrokerAddress, opts: LinkOptions, deadline: Deadline) -> socket.socket:
    try:
        if broker.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(max(0.001, deadline.remaining()))
            try:
                sock.connect(broker.path)
            except BaseException:
                sock.close()
                raise
            return sock
        sock = _dial_tcp(broker, deadline)
        return _wrap_tls(sock, broker, opts, deadline) if broker.scheme == "mqtts" else sock
    except TimeoutError:
        raise BrokerUnavailableError(f"{broker}: no connection in time") from None
    except OSError as exc:
        raise BrokerUnavailableError(f"{broker}: {exc.strerror or exc}") from None


def dial(host: str, port: int, deadline: Deadline, *, nodelay: bool = False) -> socket.socket:
    """A TCP connection to the first address of host:port that answers before `deadline`."""
    last: OSError = OSError(f"no address for {host}")
    for family, addr in resolve(host, port, deadline):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if nodelay:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(max(0.001, deadline.remaining()))
            sock.connect(addr)
        except OSError as exc:
            sock.close()
            last = exc
            if isinstance(exc, TimeoutError):
                raise
            continue
        return sock
    raise last


def _dial_tcp(broker: BrokerAddress, deadline: Deadline) -> socket.socket:
    # Mosquitto leaves Nagle on: without TCP_NODELAY every second reply waits for a delayed ACK.
    return dial(broker.host, broker.port, deadline, nodelay=True)


def _wrap_tls(
    sock: socket.socket, broker: BrokerAddress, opts: LinkOptions, deadline: Deadline
) -> socket.socket:
    import ssl  # noqa: PLC0415 - TLS costs ~15 ms to import; plain and unix brokers never pay it

    ctx = ssl.create_default_context(cafile=opts.tls_ca)
    if opts.tls_cert:
        ctx.load_cert_chain(opts.tls_cert, opts.tls_key)
    sock.settimeout(max(0.001, deadline.remaining()))
    try:
        return ctx.wrap_socket(sock, server_hostname=broker.host)
    except BaseException:
        sock.close()
        raise


def connect_first(
    opts: LinkOptions, deadline: Deadline, will: Will | None = None, client_id: str | None = None
) -> Connection:
    """Connect to the first broker in `opts.brokers` that answers; each try gets a fair share of the time.

    NotAuthorizedError when every broker refused the credentials, else BrokerUnavailableError.
    """
    problems: list[str] = []
    refused = 0
    brokers = list(opts.brokers)
    for i, broker in enumerate(brokers):
        share = deadline.within(deadline.remaining() / (len(brokers) - i))
        try:
            return Connection.open(broker, opts, share, will, client_id)
        except NotAuthorizedError as exc:
            problems.append(str(exc))
            refused += 1
        except BusError as exc:
            problems.append(str(exc))
        except TimeoutError:
            problems.append(f"{broker}: no answer in time")
    text = "no broker answered: " + "; ".join(problems or ["no brokers configured"])
    raise NotAuthorizedError(text) if brokers and refused == len(brokers) else BrokerUnavailableError(text)
