"""The validating receive loop: raw bus messages in, decoded startgate messages out.

Each payload is decoded with `startgate.bus.messages.decode`. One that does not validate is
logged (truncated), counted and dropped; nothing raises out of `get()`. QoS 1 is at least once
and the coordinator reads several brokers, so a message whose `event_id` was seen recently is
dropped as a duplicate (a bounded LRU of ids). No paho here: it reads any queue-like getter.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from startgate.bus import messages
from startgate.bus.topics import Topics
from startgate.bus.values import Counters, Inbound, LinkUp, Message

log = logging.getLogger(__name__)

Getter = Callable[[float | None], Inbound | None]
_DETAIL = 200  # characters of a bad message's description that reach the log


@dataclass(frozen=True)
class Received:
    """A message that validated: the decoded model (or `Cleared` for an emptied retained topic)."""

    topic: str
    message: messages.Message | messages.Cleared
    retain: bool
    broker: str


@dataclass(frozen=True)
class Invalid:
    """A message that did not validate, and why (the reason is already truncated)."""

    topic: str
    reason: str
    retain: bool
    broker: str
    size: int


def _printable(text: str) -> str:
    """`text` with control characters escaped, so a hostile payload cannot drive a terminal or log."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def validate(topics: Topics, raw: Message) -> Received | Invalid:
    """Decode one raw message; never raises (an unexpected decoder error is an Invalid too)."""
    try:
        decoded = messages.decode(topics, raw.topic, raw.payload)
    except Exception as exc:  # noqa: BLE001 - a bad message must never stop a process
        reason = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        topic, reason = _printable(raw.topic[:_DETAIL]), _printable(reason[: _DETAIL * 2])[:_DETAIL]
        return Invalid(topic, reason, raw.retain, raw.broker, len(raw.payload))
    return Received(raw.topic, decoded, raw.retain, raw.broker)


class RecentIds:
    """A bounded set of recently seen event ids (least recently seen evicted first)."""

    def __init__(self, size: int = 4096) -> None:
        if size < 1:
            raise ValueError("RecentIds needs room for at least one id")
        self._size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen(self, event_id: str) -> bool:
        """True if `event_id` was seen before; records it either way."""
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return True
        self._ids[event_id] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._ids)


class ValidatingInbox:
    """Reads raw messages from `source` (e.g. `SubscriberGroup.get`) and hands out valid, new ones.

    `get()` returns a `Received`, a `LinkUp` notice, or None when `timeout` passes; with
    `keep_invalid` it also returns the `Invalid` ones (counted and logged all the same) instead
    of dropping them, for tools that show bus traffic as it is.
    """

    def __init__(
        self,
        source: Getter,
        topics: Topics,
        *,
        counters: Counters | None = None,
        dedupe_size: int = 4096,
        keep_invalid: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self.topics = topics
        self.counters = counters if counters is not None else Counters()
        self._recent = RecentIds(dedupe_size)
        self._keep_invalid = keep_invalid
        self._clock = clock

    def get(self, timeout: float | None = None) -> Received | Invalid | LinkUp | None:
        """The next valid, not yet seen message (or LinkUp), or None after `timeout` seconds."""
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - self._clock())
            item = self._source(remaining)
            if item is None:
                return None
            out = self._accept(item)
            if out is not None:
                return out
            if deadline is not None and self._clock() >= deadline:
                return None

    def _accept(self, item: Inbound) -> Received | Invalid | LinkUp | None:
        if isinstance(item, LinkUp):
            return item
        result = validate(self.topics, item)
        if isinstance(result, Invalid):
            self.counters.add(dropped_invalid=1)
            log.warning(
                "dropped an invalid message (%d bytes) from %s: %s", result.size, result.broker, result.reason
            )
            return result if self._keep_invalid else None
        msg = result.message
        if isinstance(msg, messages.Message) and self._recent.seen(msg.event_id):
            self.counters.add(duplicates=1)
            log.debug("dropped a duplicate of %s on %s from %s", msg.event_id, result.topic, result.broker)
            return None
        return result

    def __iter__(self) -> Iterator[Received | Invalid | LinkUp]:
        """Everything `get()` hands out, forever (for service loops that own a thread)."""
        while True:
            item = self.get(None)
            if item is not None:
                yield item
