"""The coordinator's two sides of the bus: messages in (validated, deduplicated) and publications out.

In: one thread reads every broker's messages (SubscriberGroup's shared queue), validates them
with startgate.bus.inbox.validate, drops duplicates by `event_id` (QoS 1 and N brokers deliver
copies), and hands the decoded messages to the loop as core events. A broker's (re)connect
becomes BusConnected. A malformed command still gets an answer: BadCommand, when its payload
names a usable request id.

Out: one FIFO and thread per broker, so a broker that is down or slow never holds up the others
(the coordinator keeps working while some brokers are down). Each publication gets a sequence
number; `wait(seq)` returns once every broker has dealt with everything up to it (acknowledged,
or failed because that broker is unreachable), which is how a start waits for the gate health
or ticket the hook will read. A broker that is not connected drops its backlog quickly: when it
comes back, its LinkUp makes the core republish every retained record there.
`topic_for` and `cleared_topic` name the topic each of the core's publications goes to.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from startgate.bus import messages
from startgate.bus.inbox import Invalid, RecentIds, validate
from startgate.bus.topics import COMMAND, Topics
from startgate.bus.values import Counters, Inbound, LinkUp
from startgate.core.events import BadCommand, BusConnected, Event
from startgate.errors import BusError, TopicError
from startgate.names import check_name

log = logging.getLogger(__name__)
_BATCH = 256  # publications per pipelined round trip to one broker


class BrokerLink(Protocol):
    """What the publisher needs of one broker's client (startgate.bus.mqtt.Subscriber has it)."""

    @property
    def url(self) -> str:
        """The broker's URL."""

    @property
    def connected(self) -> bool:
        """Whether the link is up."""

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, timeout: float = 5.0) -> None:
        """Publish with QoS 1 and wait for the acknowledgement."""

    def publish_batch(self, items: Sequence[tuple[str, bytes, bool]], *, timeout: float = 5.0) -> None:
        """Publish several messages with QoS 1, pipelined, and wait for every acknowledgement."""


def _bad_command(raw_topic: str, payload: bytes, topics: Topics, reason: str) -> BadCommand | None:
    try:
        if topics.parse(raw_topic).kind != COMMAND:
            return None
    except TopicError:
        return None
    try:
        data = json.loads(payload)
        request_id = check_name(data["event_id"], "request id")
    except (ValueError, TypeError, KeyError):
        return None
    return BadCommand(request_id=request_id, error=reason)


def topic_for(topics: Topics, msg: messages.Message) -> str:  # noqa: PLR0911 - one return per message kind
    """The topic a message the core publishes goes to (from its kind and key)."""
    if isinstance(msg, messages.HeldStart):
        return topics.held(msg.vmid)
    if isinstance(msg, messages.GateHealth):
        return topics.gate_health(msg.gate)
    if isinstance(msg, messages.CoordinatorStatus):
        return topics.coordinator_status()
    if isinstance(msg, messages.Ticket):
        return topics.ticket(msg.vmid)
    if isinstance(msg, messages.Reply):
        return topics.reply(msg.request_id)
    if isinstance(msg, messages.GuestEvent):
        return topics.guest_event(msg.vmid)
    if isinstance(msg, messages.NodeStatus):
        return topics.node_status(msg.node)
    if isinstance(msg, messages.NodeEvent):
        return topics.node_event(msg.node)
    raise TypeError(f"no topic for {type(msg).__name__}")


def cleared_topic(topics: Topics, kind: str, key: int | str) -> str:
    """The topic of a retained record to clear."""
    if kind == "held":
        return topics.held(int(key))
    if kind == "ticket":
        return topics.ticket(int(key))
    if kind == "gate_health":
        return topics.gate_health(str(key))
    if kind == "coordinator_status":
        return topics.coordinator_status()
    raise ValueError(f"cannot clear a retained {kind!r}")


class BusIn:
    """Validates and deduplicates what the brokers deliver, and hands it to `deliver`."""

    def __init__(
        self,
        source: Callable[[float | None], Inbound | None] | None,
        topics: Topics,
        deliver: Callable[[Event], None] | None = None,
        *,
        counters: Counters | None = None,
        dedupe_size: int = 65536,
        own_prefix: str | None = None,
    ) -> None:
        self._source = source
        # Our own publications come back (we subscribe to everything); the core would find them
        # idempotent, but at a validation and a step each. Recognised by our event-id prefix in
        # the compact JSON every startgate message is, they are dropped before decoding.
        self._own = f'"event_id":"{own_prefix}.'.encode() if own_prefix else None
        self.own = 0
        self.topics = topics
        self._deliver = deliver
        self.counters = counters if counters is not None else Counters()
        self._recent = RecentIds(dedupe_size)
        self.retained = 0  # retained messages seen (the replay after a subscribe is made of them)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bus-in", daemon=True)

    def start(self) -> BusIn:
        """Start reading from `source` on a thread of its own, handing events to `deliver`.

        (The coordinator's loop does not use this: it calls `handle` itself on what the
        subscribers put into its queue, one thread hop less.)
        """
        self._thread.start()
        return self

    def handle(self, item: Inbound) -> Event | None:
        """One raw item as a core event, or None (invalid or a duplicate)."""
        if isinstance(item, LinkUp):
            return BusConnected(item.broker)
        if item.retain:
            self.retained += 1
        if self._own is not None and self._own in item.payload[:200]:
            self.own += 1
            return None
        result = validate(self.topics, item)
        if isinstance(result, Invalid):
            self.counters.add(dropped_invalid=1)
            log.warning(
                "dropped an invalid message (%d bytes) from %s: %s", result.size, result.broker, result.reason
            )
            return _bad_command(item.topic, item.payload, self.topics, result.reason)
        msg = result.message
        if isinstance(msg, messages.Message) and self._recent.seen(msg.event_id):
            self.counters.add(duplicates=1)
            return None
        return msg  # type: ignore[return-value]  # every decoded message kind is a core event

    def _run(self) -> None:
        if self._source is None or self._deliver is None:
            return
        while not self._stop.is_set():
            item = self._source(0.2)
            if item is None:
                continue
            try:
                event = self.handle(item)
            except Exception:  # a bad message must never stop the coordinator
                log.exception("could not handle a bus message")
                continue
            if event is not None:
                self._deliver(event)

    def stop(self) -> None:
        """Stop reading."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)


@dataclass(frozen=True)
class _Out:
    seq: int
    topic: str
    payload: bytes
    retain: bool
    broker: str | None  # None: every broker


def coalesce(items: list[_Out]) -> list[_Out]:
    """Drop retained publications that a later one in the same batch replaces (same topic).

    A retained topic holds only its latest payload, so when a burst changes one held record
    several times, only the last version needs the round trip. Everything else keeps its order.
    """
    last = {i.topic: i.seq for i in items if i.retain}
    if len(last) == sum(1 for i in items if i.retain):
        return items
    return [i for i in items if not i.retain or last[i.topic] == i.seq]


class BusOut:
    """Per-broker ordered publishing with sequence numbers to wait on."""

    def __init__(self, links: Sequence[BrokerLink], *, timeout_s: float = 2.0) -> None:
        self.links = tuple(links)
        self.timeout_s = timeout_s
        self._cond = threading.Condition()
        self._seq = 0
        self._done = {link.url: 0 for link in self.links}
        self._queues: dict[str, queue.SimpleQueue[_Out | None]] = {
            link.url: queue.SimpleQueue() for link in self.links
        }
        self.published = 0
        self.failed = 0
        self._threads = [
            threading.Thread(target=self._run, args=(link,), name=f"bus-out-{i}", daemon=True)
            for i, link in enumerate(self.links)
        ]

    def start(self) -> BusOut:
        """Start the per-broker threads."""
        for t in self._threads:
            t.start()
        return self

    def send(self, topic: str, payload: bytes, *, retain: bool, broker: str | None = None) -> int:
        """Queue a publication (to every broker, or one); its sequence number."""
        with self._cond:
            self._seq += 1
            item = _Out(self._seq, topic, payload, retain, broker)
            for q in self._queues.values():
                q.put(item)
            return item.seq

    @property
    def last_seq(self) -> int:
        """The sequence number of the latest publication queued."""
        with self._cond:
            return self._seq

    def wait(self, seq: int, timeout: float) -> bool:
        """Wait until every broker dealt with publications up to `seq`; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: min(self._done.values(), default=seq) >= seq, timeout)

    def _run(self, link: BrokerLink) -> None:
        q = self._queues[link.url]
        while True:
            first = q.get()
            if first is None:
                return
            batch = [first]
            # Everything queued is taken at once: when the broker lags behind a burst, a held
            # record changed many times meanwhile is published once instead of once per change.
            while True:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    q.put(None)
                    break
                batch.append(item)
            mine = coalesce([i for i in batch if i.broker is None or i.broker == link.url])
            for start in range(0, len(mine), _BATCH):
                self._publish(link, mine[start : start + _BATCH])
            with self._cond:
                self._done[link.url] = batch[-1].seq
                self._cond.notify_all()

    def _publish(self, link: BrokerLink, items: list[_Out]) -> None:
        if not link.connected:
            with self._cond:
                self.failed += len(items)
            return
        try:
            if len(items) == 1:
                i = items[0]
                link.publish(i.topic, i.payload, retain=i.retain, timeout=self.timeout_s)
            else:
                link.publish_batch([(i.topic, i.payload, i.retain) for i in items], timeout=self.timeout_s)
        except BusError as exc:
            with self._cond:
                self.failed += len(items)
            log.info("%d publication(s) not made on %s: %s", len(items), link.url, exc)
            return
        with self._cond:
            self.published += len(items)

    def close(self, timeout: float = 3.0) -> None:
        """Let the queues drain (up to `timeout`), then stop the threads."""
        self.wait(self.last_seq, timeout)
        for q in self._queues.values():
            q.put(None)
        for t in self._threads:
            t.join(1.0)
