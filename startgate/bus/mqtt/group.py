"""`SubscriberGroup`: one Subscriber per broker sharing one queue, and the builders from config.

The coordinator reads every broker in `bus.brokers` and writes its retained state to every one,
so no bridge is needed and no broker is a single point of failure (design.md, "Brokers").
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from startgate.bus.mqtt.publisher import Publisher
from startgate.bus.mqtt.subscriber import Subscriber
from startgate.bus.values import ClientSettings, Counters, Inbound, Will
from startgate.errors import BrokerUnavailableError, BusError

if TYPE_CHECKING:
    from startgate.config import Bus

log = logging.getLogger("startgate.bus.mqtt")
Clock = Callable[[], float]


@dataclass(frozen=True)
class PublishReport:
    """What `SubscriberGroup.publish_all` achieved: the brokers that acknowledged, and the failures."""

    acked: tuple[str, ...]
    failed: tuple[tuple[str, BusError], ...]

    @property
    def ok(self) -> bool:
        """True when at least one broker acknowledged."""
        return bool(self.acked)


class SubscriberGroup:
    """One Subscriber per broker, sharing one inbox and one set of counters."""

    def __init__(
        self,
        brokers: Sequence[str],
        settings: ClientSettings,
        *,
        client_id: str,
        topics: Sequence[str] = (),
        will: Will | None = None,
        counters: Counters | None = None,
        persistent: bool = True,
        clock: Clock = time.monotonic,
    ) -> None:
        if not brokers:
            raise ValueError("SubscriberGroup needs at least one broker URL")
        self.inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self.counters = counters if counters is not None else Counters()
        self.subscribers = tuple(
            Subscriber(
                b,
                settings,
                client_id=client_id,
                topics=topics,
                will=will,
                inbox=self.inbox,
                counters=self.counters,
                persistent=persistent,
                clock=clock,
            )
            for b in brokers
        )

    def start(self) -> SubscriberGroup:
        """Start every subscriber (returns at once)."""
        for s in self.subscribers:
            s.start()
        return self

    def wait_ready(self, timeout: float, *, every: bool = True) -> None:
        """Wait until every broker (or, with every=False, any one) is connected and subscribed."""
        deadline = time.monotonic() + timeout
        if every:
            for s in self.subscribers:
                s.wait_ready(max(0.0, deadline - time.monotonic()))
            return
        pause = threading.Event()
        while time.monotonic() < deadline:
            if any(s.ready for s in self.subscribers):
                return
            pause.wait(0.02)
        why = "; ".join(f"{s.url}: {s.last_error or 'no answer'}" for s in self.subscribers)
        raise BrokerUnavailableError(f"no broker ready after {timeout:.1f}s ({why})")

    def get(self, timeout: float | None = None) -> Inbound | None:
        """The next message or LinkUp notice from any broker, or None after `timeout` seconds."""
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None

    def publish_to(
        self, broker: str, topic: str, payload: bytes, *, retain: bool = True, timeout: float = 5.0
    ) -> None:
        """Publish on one broker of the group (e.g. after its LinkUp)."""
        for s in self.subscribers:
            if s.url == broker:
                s.publish(topic, payload, retain=retain, timeout=timeout)
                return
        raise BusError(f"{broker} is not one of this group's brokers")

    def publish_all(
        self, topic: str, payload: bytes, *, retain: bool = True, timeout: float = 5.0
    ) -> PublishReport:
        """Publish on every broker, in parallel, each waiting for its PUBACK within `timeout`."""
        results: dict[str, BusError | None] = {}
        lock = threading.Lock()

        def one(s: Subscriber) -> None:
            try:
                s.publish(topic, payload, retain=retain, timeout=timeout)
                err: BusError | None = None
            except BusError as exc:
                err = exc
            with lock:
                results[s.url] = err

        threads = [threading.Thread(target=one, args=(s,), daemon=True) for s in self.subscribers[1:]]
        for t in threads:
            t.start()
        one(self.subscribers[0])
        for t in threads:
            t.join()
        acked = tuple(url for url, e in results.items() if e is None)
        failed = tuple((url, e) for url, e in results.items() if e is not None)
        for url, e in failed:
            log.warning("retained %s not written to %s: %s", topic, url, e)
        return PublishReport(acked, failed)

    def stop(self, *, publish_will: bool = False, timeout: float = 2.0) -> None:
        """Stop every subscriber (optionally publishing each one's will first)."""
        for s in self.subscribers:
            s.stop(publish_will=publish_will, timeout=timeout)


def publisher_from_config(bus: Bus, *, clock: Clock = time.monotonic, **overrides: Any) -> Publisher:
    """The one place a service's Publisher is built from the `[bus]` config section."""
    return Publisher(bus.brokers, ClientSettings.from_config(bus, **overrides), clock=clock)


def subscribers_from_config(
    bus: Bus,
    *,
    client_id: str,
    topics: Sequence[str],
    will: Will | None = None,
    counters: Counters | None = None,
    persistent: bool = True,
    clock: Clock = time.monotonic,
    **overrides: Any,
) -> SubscriberGroup:
    """The one place a service's SubscriberGroup (one client per broker) is built from `[bus]`."""
    return SubscriberGroup(
        bus.brokers,
        ClientSettings.from_config(bus, **overrides),
        client_id=client_id,
        topics=topics,
        will=will,
        counters=counters,
        persistent=persistent,
        clock=clock,
    )
