"""`Publisher`: QoS 1 to the first broker in the list that answers, each publish bounded in time.

For services that only send (node agent, CLI commands). It keeps one clean-session connection
and lets paho reconnect nothing by itself: after a drop, the next publish starts again from the
first broker (on a real cluster, the node's own). A broker that refuses MQTT v5 is spoken to in
3.1.1 when the protocol is "auto", and remembered.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from startgate.bus.mqtt._paho import (
    UNSUPPORTED_PROTOCOL,
    V5,
    V311,
    Acks,
    Clock,
    Outcome,
    check_publish_args,
    connect_args,
    guard,
    log,
    new_client,
    protocol_name,
    publish_and_wait,
    refusal,
)
from startgate.bus.values import BrokerAddress, ClientSettings
from startgate.errors import (
    BrokerUnavailableError,
    BusError,
    NotAuthorizedError,
    PublishTimeoutError,
)


class _PubLink:
    """One short-lived publishing connection: clean session, no automatic reconnect."""

    def __init__(
        self, addr: BrokerAddress, settings: ClientSettings, protocol: MQTTProtocolVersion, clock: Clock
    ):
        self.addr = addr
        self.protocol = protocol
        self._clock = clock
        self._acks = Acks(clock)
        self._connack = threading.Event()
        self._reason: ReasonCode | None = None
        self._alive = False
        client_id = f"startgate-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.client = new_client(addr, settings, client_id, protocol, persistent=False, reconnect=False)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self._settings = settings

    @property
    def alive(self) -> bool:
        return self._alive

    @guard
    def _on_connect(self, _c: paho.Client, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        self._reason = reason
        self._alive = not reason.is_failure
        self._connack.set()

    @guard
    def _on_disconnect(self, _c: paho.Client, _u: object, _f: object, _r: ReasonCode, _p: object) -> None:
        self._alive = False
        self._connack.set()
        self._acks.link_down()

    @guard
    def _on_publish(self, _c: paho.Client, _u: object, mid: int, reason: ReasonCode, _p: object) -> None:
        self._acks.acked(mid, reason)

    def open(self, deadline: float) -> None:
        """Connect and wait for the CONNACK until the deadline or the connect timeout, whichever is first."""
        url = self.addr.url
        start = self._clock()
        wait = min(self._settings.connect_timeout_s, deadline - start)
        if wait <= 0:
            raise BrokerUnavailableError(f"{url}: no time left to connect")
        self.client.connect_timeout = wait
        try:
            self.client.connect(
                self.addr.host,
                self.addr.port or 1883,
                **connect_args(self.protocol, self._settings, persistent=False),
            )
        except (OSError, ValueError) as exc:  # refused, unreachable, TLS handshake, bad address
            raise BrokerUnavailableError(f"{url}: {exc}") from None
        self.client.loop_start()
        # One budget for TCP, TLS and the CONNACK together.
        if not self._connack.wait(max(0.0, start + wait - self._clock())) or self._reason is None:
            self.close()
            raise BrokerUnavailableError(f"{url}: no CONNACK within {wait:.1f}s (the broker did not answer)")
        if self._reason.is_failure:
            self.close()
            raise refusal(self._reason, f"{url} refused the connection")

    def publish(self, topic: str, payload: bytes, retain: bool, deadline: float) -> Outcome:
        return publish_and_wait(
            self.client,
            self._acks,
            url=self.addr.url,
            topic=topic,
            payload=payload,
            retain=retain,
            deadline=deadline,
            stop_on_drop=True,
        )

    def close(self) -> None:
        self._alive = False
        self.client.disconnect()
        self.client.loop_stop()


class Publisher:
    """Publishes QoS 1 messages to the first broker in the list that answers, waiting for each PUBACK."""

    def __init__(
        self,
        brokers: Sequence[str],
        settings: ClientSettings,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        if not brokers:
            raise ValueError("Publisher needs at least one broker URL")
        self.addresses = tuple(BrokerAddress.parse(b) for b in brokers)
        self.settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._link: _PubLink | None = None
        self._protocols: dict[str, MQTTProtocolVersion] = {}

    @property
    def broker(self) -> str | None:
        """The URL of the broker currently connected, if any."""
        link = self._link
        return link.addr.url if link is not None and link.alive else None

    @property
    def protocol(self) -> Literal["5", "3.1.1"] | None:
        """The MQTT version of the current connection, if any."""
        link = self._link
        return protocol_name(link.protocol) if link is not None and link.alive else None

    def connect(self, timeout: float = 5.0) -> str:
        """Connect now (publish() also does it on demand); returns the URL of the broker that answered."""
        with self._lock:
            return self._ensure(self._clock() + timeout).addr.url

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, timeout: float = 5.0) -> str:
        """Publish with QoS 1 and wait for the PUBACK; returns the broker URL that acknowledged it.

        Raises BrokerUnavailableError (no broker answered), NotAuthorizedError (credentials or
        ACL refused: v5 only reports ACL denials) or PublishTimeoutError (no PUBACK in time;
        the message may still arrive, QoS 1 is at least once).
        """
        check_publish_args(topic, payload)
        deadline = self._clock() + timeout
        for _attempt in range(len(self.addresses) + 1):
            with self._lock:
                link = self._ensure(deadline)
            outcome = link.publish(topic, payload, retain, deadline)
            if isinstance(outcome, ReasonCode):
                return link.addr.url
            self._drop(link)
            if outcome == "timeout" or self._clock() >= deadline:
                raise PublishTimeoutError(f"no PUBACK from {link.addr.url} for {topic} within {timeout:.1f}s")
            log.info("link to %s dropped before the PUBACK for %s; trying again", link.addr.url, topic)
        raise PublishTimeoutError(f"publish to {topic} failed: every link dropped before its PUBACK")

    def _ensure(self, deadline: float) -> _PubLink:
        if self._link is not None and self._link.alive:
            return self._link
        if self._link is not None:
            self._link.close()
            self._link = None
        problems: list[BusError] = []
        for addr in self.addresses:
            try:
                self._link = self._open(addr, deadline)
            except BusError as exc:
                log.info("broker %s did not answer: %s", addr.url, exc)
                problems.append(exc)
                continue
            if addr is not self.addresses[0]:
                log.warning("publishing to %s: the brokers before it did not answer", addr.url)
            return self._link
        detail = "; ".join(str(p) for p in problems)
        if any(isinstance(p, NotAuthorizedError) for p in problems):
            raise NotAuthorizedError(f"no broker accepted the connection: {detail}")
        raise BrokerUnavailableError(f"no broker answered: {detail}")

    def _open(self, addr: BrokerAddress, deadline: float) -> _PubLink:
        protocol = self._protocols.get(addr.url, V311 if self.settings.protocol == "3.1.1" else V5)
        link = _PubLink(addr, self.settings, protocol, self._clock)
        try:
            link.open(deadline)
        except BrokerUnavailableError as exc:
            unsupported = link._reason is not None and link._reason.value == UNSUPPORTED_PROTOCOL
            if not (unsupported and self.settings.protocol == "auto" and protocol == V5):
                raise
            log.info("%s refused MQTT v5 (%s); falling back to 3.1.1", addr.url, exc)
            link = _PubLink(addr, self.settings, V311, self._clock)
            link.open(deadline)
        self._protocols[addr.url] = link.protocol
        return link

    def _drop(self, link: _PubLink) -> None:
        with self._lock:
            if self._link is link:
                self._link = None
        link.close()

    def close(self) -> None:
        """Disconnect (a clean DISCONNECT when connected)."""
        with self._lock:
            link, self._link = self._link, None
        if link is not None:
            link.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
