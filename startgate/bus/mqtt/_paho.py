"""What the publisher and the subscribers share: building a paho client, PUBACK tracking, and the
translation of paho's reason codes into startgate's errors.

Callbacks run on paho's network thread, so they only record state and enqueue; `guard` makes
sure an exception in one is logged and swallowed, never allowed to end that thread.
"""

from __future__ import annotations

import functools
import logging
import ssl
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Literal, ParamSpec, cast

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from startgate.bus.values import BrokerAddress, ClientSettings, Will
from startgate.errors import (
    BrokerUnavailableError,
    BusError,
    MessageError,
    NotAuthorizedError,
    TopicError,
)

log = logging.getLogger("startgate.bus.mqtt")
_paho_log = logging.getLogger("startgate.bus.paho")


def _demote_noise(record: logging.LogRecord) -> bool:
    # paho 2.2 runs its loop once more after a clean disconnect and logs that as an ERROR.
    # The level was checked before filters run: a demoted record must also be dropped here
    # unless DEBUG is on, or every handler still prints it.
    if record.levelno == logging.ERROR and str(record.msg).startswith("Client is not connected"):
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return _paho_log.isEnabledFor(logging.DEBUG)
    return True


_paho_log.addFilter(_demote_noise)

Clock = Callable[[], float]
P = ParamSpec("P")
Outcome = ReasonCode | Literal["timeout", "dropped"]

V5 = MQTTProtocolVersion.MQTTv5
V311 = MQTTProtocolVersion.MQTTv311
UNSUPPORTED_PROTOCOL = 132  # CONNACK; paho also maps a 3.1.1 broker's "unacceptable protocol" to it
_AUTH_REFUSED = {134, 135}  # CONNACK/PUBACK/SUBACK: bad user name or password, not authorized
MAX_PAYLOAD = 268_435_455  # MQTT's remaining-length limit


def guard(fn: Callable[P, None]) -> Callable[P, None]:
    """Wrap a paho callback: log any exception instead of letting it end the network thread."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:
            log.exception("MQTT callback %s failed (ignored, the link stays up)", fn.__name__)

    return wrapper


def protocol_name(protocol: MQTTProtocolVersion) -> Literal["5", "3.1.1"]:
    """The MQTT version as config spells it."""
    return "5" if protocol == V5 else "3.1.1"


def refusal(reason: ReasonCode, what: str) -> BusError:
    """The startgate error for a failed CONNACK/PUBACK/SUBACK reason code."""
    if reason.value in _AUTH_REFUSED:
        return NotAuthorizedError(f"{what}: {reason}")
    return BrokerUnavailableError(f"{what}: {reason}")


def _ssl_context(settings: ClientSettings, url: str) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(cafile=str(settings.tls_ca) if settings.tls_ca else None)
        if settings.tls_cert and settings.tls_key:
            ctx.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    except (OSError, ValueError) as exc:
        files = ", ".join(str(p) for p in (settings.tls_ca, settings.tls_cert, settings.tls_key) if p)
        raise BrokerUnavailableError(f"{url}: cannot load TLS files ({files}): {exc}") from None
    return ctx


def new_client(
    addr: BrokerAddress,
    settings: ClientSettings,
    client_id: str,
    protocol: MQTTProtocolVersion,
    *,
    persistent: bool,
    reconnect: bool,
    will: Will | None = None,
) -> paho.Client:
    """A configured paho client (not yet connected)."""
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=None if protocol == V5 else not persistent,
        protocol=protocol,
        transport=addr.transport,
        reconnect_on_failure=reconnect,
    )
    client.enable_logger(_paho_log)
    client.connect_timeout = settings.connect_timeout_s
    # paho annotates the delays as int but only multiplies and sleeps with them; tests use 0.05 s.
    client.reconnect_delay_set(cast(int, settings.reconnect_min_s), cast(int, settings.reconnect_max_s))
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    if addr.tls:
        client.tls_set_context(_ssl_context(settings, addr.url))
    if will is not None:
        client.will_set(will.topic, will.payload, qos=1, retain=will.retain)
    return client


def connect_args(
    protocol: MQTTProtocolVersion, settings: ClientSettings, *, persistent: bool
) -> dict[str, Any]:
    """clean_start/properties for connect(): a v5 session persists only with an expiry interval."""
    if protocol != V5:
        return {"keepalive": settings.keepalive_s}
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # - paho leaves __init__ unannotated
    if persistent:
        props.SessionExpiryInterval = settings.session_expiry_s
    return {"keepalive": settings.keepalive_s, "clean_start": not persistent, "properties": props}


def check_publish_args(topic: str, payload: bytes) -> None:
    """Refuse a topic or payload no broker would take, before anything is sent."""
    if not topic or "+" in topic or "#" in topic or "\0" in topic:
        raise TopicError(f"cannot publish to topic {topic!r}: empty, wildcard or NUL")
    if len(payload) > MAX_PAYLOAD:
        raise MessageError(f"payload for {topic} is {len(payload)} bytes, over MQTT's limit")


class Acks:
    """PUBACK reason codes by message id, recorded on the network thread and awaited by publishers.

    Completion is judged by paho's own per-message `is_published()`, so a reused message id can
    never be mistaken for another; the reason codes are kept in a bounded map for the waiter.
    """

    _KEEP = 1024  # reason codes of publishes nobody waits for any more are evicted oldest first

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._reasons: OrderedDict[int, ReasonCode] = OrderedDict()
        self._drops = 0

    @property
    def drops(self) -> int:
        """How many times the link went down so far."""
        with self._cond:
            return self._drops

    def acked(self, mid: int, reason: ReasonCode) -> None:
        """Record a PUBACK (network thread)."""
        with self._cond:
            self._reasons[mid] = reason
            self._reasons.move_to_end(mid)
            while len(self._reasons) > self._KEEP:
                self._reasons.popitem(last=False)
            self._cond.notify_all()

    def link_down(self) -> None:
        """Wake the waiters: the link went down (network thread)."""
        with self._cond:
            self._drops += 1
            self._cond.notify_all()

    def wait(self, info: paho.MQTTMessageInfo, deadline: float, drops_before: int | None) -> Outcome:
        """The PUBACK's reason code, "timeout" at the deadline, or "dropped" when the link went
        down after `drops_before` (None: keep waiting, paho re-sends after reconnecting)."""
        with self._cond:
            while True:
                if info.mid in self._reasons:
                    if info.is_published():
                        return self._reasons.pop(info.mid)
                    # on_publish runs just before paho marks the message published: a moment more.
                    self._cond.wait(0.002)
                    continue
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return "timeout"
                if drops_before is not None and self._drops != drops_before:
                    return "dropped"
                self._cond.wait(min(remaining, 0.5))


def publish_and_wait(
    client: paho.Client,
    acks: Acks,
    *,
    url: str,
    topic: str,
    payload: bytes,
    retain: bool,
    deadline: float,
    stop_on_drop: bool,
) -> Outcome:
    """Send one QoS 1 message and wait for its PUBACK (a refusal raises); see `Acks.wait`."""
    drops_before = acks.drops if stop_on_drop else None
    try:
        info = client.publish(topic, payload, qos=1, retain=retain)
    except ValueError as exc:
        raise TopicError(f"cannot publish to {topic!r} on {url}: {exc}") from None
    if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
        return "dropped"  # queued inside paho, sent if the link comes back: at least once
    if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
        raise BusError(f"publish to {topic} on {url} failed: {paho.error_string(info.rc)}")
    outcome = acks.wait(info, deadline, drops_before)
    if isinstance(outcome, ReasonCode) and outcome.is_failure:
        raise refusal(outcome, f"{url} refused the publish to {topic}")
    return outcome


def publish_pipelined(
    client: paho.Client,
    acks: Acks,
    *,
    url: str,
    items: Sequence[tuple[str, bytes, bool]],
    deadline: float,
) -> Outcome:
    """Send several QoS 1 messages back to back, then wait for every PUBACK (the first failure wins).

    paho keeps at most its in-flight window on the wire and sends the rest as acks come back, so
    a batch costs about one round trip per window instead of one per message. Batches must stay
    below `Acks._KEEP`, or early acknowledgements could be evicted before they are awaited.
    """
    if len(items) > Acks._KEEP // 2:
        raise ValueError(f"a pipelined batch holds at most {Acks._KEEP // 2} messages")
    drops_before = acks.drops
    infos = []
    for topic, payload, retain in items:
        try:
            info = client.publish(topic, payload, qos=1, retain=retain)
        except ValueError as exc:
            raise TopicError(f"cannot publish to {topic!r} on {url}: {exc}") from None
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            return "dropped"
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise BusError(f"publish to {topic} on {url} failed: {paho.error_string(info.rc)}")
        infos.append((topic, info))
    outcome: Outcome = "timeout"
    for topic, info in infos:
        outcome = acks.wait(info, deadline, drops_before)
        if isinstance(outcome, ReasonCode) and outcome.is_failure:
            raise refusal(outcome, f"{url} refused the publish to {topic}")
        if not isinstance(outcome, ReasonCode):
            return outcome
    return outcome
