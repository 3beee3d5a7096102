"""`Subscriber`: a long-lived client of one broker, for services that listen.

Fixed client id and persistent session (v5: clean_start=False plus a Session Expiry Interval,
without which the broker forgets the session at disconnect; 3.1.1: clean_session=False), QoS 1
subscriptions re-made on every connect, a Last Will, reconnects with exponential backoff
(connect_async + loop_start: a broker that is down at start does not fail the service), and
received messages handed over through a thread-safe queue.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.reasoncodes import ReasonCode

from startgate.bus.mqtt._paho import (
    UNSUPPORTED_PROTOCOL,
    V5,
    V311,
    Acks,
    Clock,
    check_publish_args,
    connect_args,
    guard,
    log,
    new_client,
    protocol_name,
    publish_and_wait,
    publish_pipelined,
    refusal,
)
from startgate.bus.values import BrokerAddress, ClientSettings, Counters, Inbound, LinkUp, Message, Will
from startgate.errors import BrokerUnavailableError, BusError, NotAuthorizedError, PublishTimeoutError


def _nodelay(client: paho.Client) -> None:
    """Send small packets (PUBACKs, single publishes) at once (paho leaves Nagle's algorithm on).

    With Nagle, a PUBACK written while an earlier packet is unacknowledged waits for the peer's
    delayed ACK, 40 ms on Linux: a publish-and-wait then takes 40 ms instead of a round trip.
    """
    sock = client.socket()
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Subscriber:
    """A long-lived client of one broker: persistent session, QoS 1 subscriptions, Last Will, reconnects.

    `persistent=False` asks for a clean session instead (a CLI that watches for a moment must not
    leave a session behind for the broker to queue messages into).

    `start()` never blocks and never fails because the broker is down: paho's network thread
    keeps trying with exponential backoff. Messages and `LinkUp` notices land in `inbox`.
    """

    def __init__(
        self,
        broker: str,
        settings: ClientSettings,
        *,
        client_id: str,
        topics: Sequence[str] = (),
        will: Will | None = None,
        inbox: queue.SimpleQueue[Inbound] | None = None,
        counters: Counters | None = None,
        persistent: bool = True,
        clock: Clock = time.monotonic,
    ) -> None:
        if not client_id:
            raise ValueError("a Subscriber needs a fixed client id (its persistent session is keyed by it)")
        self.address = BrokerAddress.parse(broker)
        self.settings = settings
        self.client_id = client_id
        self.topics = tuple(topics)
        self.will = will
        self.persistent = persistent
        # SimpleQueue: its put and get are a twentieth of Queue's, and paho's thread puts every message.
        self.inbox: queue.SimpleQueue[Inbound] = inbox if inbox is not None else queue.SimpleQueue()
        self.counters = counters if counters is not None else Counters()
        self._clock = clock
        self._acks = Acks(clock)
        self._lock = threading.Lock()
        self._client: paho.Client | None = None
        self._protocol = V311 if settings.protocol == "3.1.1" else V5
        self._connected = threading.Event()
        self._ready = threading.Event()
        self._sub_mid: int | None = None
        self._session_present = False
        self._stopping = False
        self.last_error: BusError | None = None

    @property
    def url(self) -> str:
        """The broker's URL."""
        return self.address.url

    @property
    def protocol(self) -> Literal["5", "3.1.1"]:
        """The MQTT version in use (after an "auto" fallback: "3.1.1")."""
        return protocol_name(self._protocol)

    @property
    def connected(self) -> bool:
        """True while the broker has accepted the connection."""
        return self._connected.is_set()

    @property
    def ready(self) -> bool:
        """True while connected and every subscription is granted."""
        return self._ready.is_set()

    def start(self) -> Subscriber:
        """Start connecting in the background (returns at once)."""
        with self._lock:
            if self._client is not None or self._stopping:
                return self
            self._launch()
        return self

    def _launch(self) -> None:
        # Called with the lock held; the client is current before its thread can call back.
        client = new_client(
            self.address,
            self.settings,
            self.client_id,
            self._protocol,
            persistent=self.persistent,
            reconnect=True,
            will=self.will,
        )
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.connect_async(
            self.address.host,
            self.address.port or 1883,
            **connect_args(self._protocol, self.settings, persistent=self.persistent),
        )
        self._client = client
        client.loop_start()

    def wait_ready(self, timeout: float) -> None:
        """Wait until connected and subscribed; raise the last refusal or BrokerUnavailableError."""
        if self._ready.wait(timeout):
            return
        if self.last_error is not None:
            raise type(self.last_error)(f"{self.url} not ready after {timeout:.1f}s: {self.last_error}")
        raise BrokerUnavailableError(f"{self.url} not ready after {timeout:.1f}s")

    def get(self, timeout: float | None = None) -> Inbound | None:
        """The next message or LinkUp notice, or None after `timeout` seconds."""
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, timeout: float = 5.0) -> None:
        """Publish with QoS 1 on this broker and wait for the PUBACK; fails at once when not connected."""
        check_publish_args(topic, payload)
        client = self._client
        if client is None or not self._connected.is_set():
            detail = f": {self.last_error}" if self.last_error else ""
            raise BrokerUnavailableError(f"not connected to {self.url}{detail}")
        deadline = self._clock() + timeout
        outcome = publish_and_wait(
            client,
            self._acks,
            url=self.url,
            topic=topic,
            payload=payload,
            retain=retain,
            deadline=deadline,
            stop_on_drop=False,
        )
        if outcome == "timeout":
            raise PublishTimeoutError(f"no PUBACK from {self.url} for {topic} within {timeout:.1f}s")
        if outcome == "dropped":
            raise BrokerUnavailableError(f"the link to {self.url} dropped; {topic} is re-sent if it returns")

    def publish_batch(self, items: Sequence[tuple[str, bytes, bool]], *, timeout: float = 5.0) -> None:
        """Publish (topic, payload, retain) messages with QoS 1, pipelined, and wait for every PUBACK.

        For a service that writes much retained state at once (the coordinator after a takeover or
        a release storm): one round trip per paho in-flight window, not one per message. At most
        500 messages per call. Fails at once when not connected, and when the link drops meanwhile
        (the caller republishes what matters when the link is back).
        """
        for topic, payload, _retain in items:
            check_publish_args(topic, payload)
        client = self._client
        if client is None or not self._connected.is_set():
            detail = f": {self.last_error}" if self.last_error else ""
            raise BrokerUnavailableError(f"not connected to {self.url}{detail}")
        outcome = publish_pipelined(
            client, self._acks, url=self.url, items=items, deadline=self._clock() + timeout
        )
        if outcome == "timeout":
            raise PublishTimeoutError(
                f"no PUBACK from {self.url} for a batch of {len(items)} within {timeout:.1f}s"
            )
        if outcome == "dropped":
            raise BrokerUnavailableError(f"the link to {self.url} dropped during a batch of {len(items)}")

    def stop(self, *, publish_will: bool = False, timeout: float = 2.0) -> None:
        """Disconnect cleanly; with `publish_will`, first publish the will's payload (a clean
        disconnect does not fire the will, so "offline" must be said explicitly)."""
        if publish_will and self.will is not None and self.connected:
            try:
                self.publish(self.will.topic, self.will.payload, retain=self.will.retain, timeout=timeout)
            except BusError as exc:
                log.warning("could not publish the final %s to %s: %s", self.will.topic, self.url, exc)
        with self._lock:
            self._stopping = True
            client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        self._connected.clear()
        self._ready.clear()

    def _is_current(self, client: paho.Client) -> bool:
        return client is self._client and not self._stopping

    @guard
    def _on_connect(
        self, client: paho.Client, _u: object, flags: Any, reason: ReasonCode, _p: object
    ) -> None:
        if not self._is_current(client):
            return
        if reason.is_failure:
            if (
                reason.value == UNSUPPORTED_PROTOCOL
                and self.settings.protocol == "auto"
                and self._protocol == V5
            ):
                log.info("%s refused MQTT v5; falling back to 3.1.1", self.url)
                # Swapping clients means joining this very thread: do it from another one.
                threading.Thread(target=self._downgrade, args=(client,), daemon=True).start()
                return
            self.last_error = refusal(reason, f"{self.url} refused the connection")
            log.warning("%s; retrying with backoff", self.last_error)
            return
        self.last_error = None
        _nodelay(client)
        self._session_present = bool(flags.session_present)
        self._connected.set()
        self.counters.add(connects=1)
        log.info(
            "connected to %s (MQTT %s, session present: %s)", self.url, self.protocol, self._session_present
        )
        if not self.topics:
            self._mark_ready()
            return
        # Re-subscribed on every connect: harmless with a kept session, vital when it was lost.
        _rc, self._sub_mid = client.subscribe([(t, 1) for t in self.topics])

    def _mark_ready(self) -> None:
        self._ready.set()
        self.inbox.put(LinkUp(self.url, self._session_present, self.protocol))

    @guard
    def _downgrade(self, old: paho.Client) -> None:
        with self._lock:
            if not self._is_current(old):
                return
            self._protocol = V311
        old.disconnect()
        old.loop_stop()
        with self._lock:
            if not self._stopping and self._client is old:
                self._launch()

    @guard
    def _on_connect_fail(self, client: paho.Client, _u: object) -> None:
        if self._is_current(client):
            self.last_error = BrokerUnavailableError(f"{self.url}: connection failed")
            log.debug("connect to %s failed; retrying with backoff", self.url)

    @guard
    def _on_subscribe(
        self, client: paho.Client, _u: object, mid: int, reasons: list[ReasonCode], _p: object
    ) -> None:
        if not self._is_current(client) or mid != self._sub_mid:
            return
        refused = [f"{t} ({r})" for t, r in zip(self.topics, reasons, strict=False) if r.is_failure]
        if refused:
            self.last_error = NotAuthorizedError(
                f"{self.url} refused the subscription to {', '.join(refused)}"
            )
            log.error("%s", self.last_error)
            return
        self._mark_ready()

    @guard
    def _on_disconnect(
        self, client: paho.Client, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        if client is not self._client:
            return
        self._connected.clear()
        self._ready.clear()
        self._acks.link_down()
        if not self._stopping:
            log.warning("lost the link to %s (%s); reconnecting", self.url, reason)

    @guard
    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            self.counters.add(received=1, dropped_invalid=1)
            log.warning("dropped a message from %s whose topic is not UTF-8", self.url)
            return
        self.counters.add(received=1)
        self.inbox.put(Message(topic, bytes(msg.payload), bool(msg.retain), self.url))

    @guard
    def _on_publish(self, _c: paho.Client, _u: object, mid: int, reason: ReasonCode, _p: object) -> None:
        self._acks.acked(mid, reason)
