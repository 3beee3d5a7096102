"""How CLI commands use the bus: read retained state from every broker, and ask the coordinator.

- `reader(cfg, filters, who=...)`: a clean-session subscriber on every broker of `bus.brokers`
  behind a validating inbox (copies of one message are seen once), closed on exit. It leaves
  nothing behind on the brokers.
- `read_state(cfg)`: the retained state (`ClusterState`): gates, held starts, nodes, the
  coordinator, tickets, and which brokers answered. Each broker is read with the one-shot
  client (startgate.bus.oneshot), whose PINGREQ after the SUBSCRIBE is a barrier: when the
  PINGRESP arrives, every retained message has arrived, so nothing is missed and nothing waits.
- `watch_state(cfg, render)`: the same state kept live by a subscriber on every broker; a short
  quiet spell after a change ends each update (so a burst is shown once).
- `ask(cfg, command, timeout)`: publish a `Command` and wait for the coordinator's `Reply` on
  `coordinator/reply/<request id>` (subscribed on every broker *before* publishing, so a fast
  answer is not missed).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from startgate.commands._state import BrokerState, ClusterState
from startgate.errors import BrokerUnavailableError, BusError

if TYPE_CHECKING:
    from startgate.bus.inbox import ValidatingInbox
    from startgate.bus.messages import Command, Reply
    from startgate.bus.mqtt import SubscriberGroup
    from startgate.bus.oneshot import LinkOptions
    from startgate.bus.topics import Topics
    from startgate.config import Config

SETTLE_S = 0.3  # a quiet spell this long after every broker is subscribed ends a retained read


class NoAnswerError(BusError):
    """The coordinator did not answer a command in time."""


@dataclass
class Reader:
    """An open subscription on every broker, and the inbox that validates what arrives."""

    topics: Topics
    group: SubscriberGroup
    inbox: ValidatingInbox

    def wait_ready(self, timeout: float) -> tuple[BrokerState, ...]:
        """Wait until every broker is subscribed or `timeout` passes; raise if none answered."""
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        subs = self.group.subscribers
        while time.monotonic() < deadline and not all(s.ready for s in subs):
            pause.wait(0.02)
        states = tuple(
            BrokerState(s.url, s.ready, "" if s.ready else str(s.last_error or "no answer")) for s in subs
        )
        if not any(b.ready for b in states):
            why = "; ".join(f"{b.url}: {b.error}" for b in states)
            raise BrokerUnavailableError(f"no broker answered within {timeout:.1f}s ({why})")
        return states


@contextlib.contextmanager
def reader(cfg: Config, filters: Sequence[str], *, who: str, keep_invalid: bool = False) -> Iterator[Reader]:
    """Subscribe to `filters` on every broker with a clean session; stop the clients on exit."""
    from startgate.bus.inbox import ValidatingInbox  # noqa: PLC0415 - keep `startgate --help` light
    from startgate.bus.mqtt import subscribers_from_config  # noqa: PLC0415

    group = subscribers_from_config(
        cfg.bus,
        client_id=f"startgate-{who}-{uuid.uuid4().hex[:12]}",
        topics=list(filters),
        persistent=False,
    )
    topics = cluster_topics(cfg)
    inbox = ValidatingInbox(group.get, topics, counters=group.counters, keep_invalid=keep_invalid)
    group.start()
    try:
        yield Reader(topics, group, inbox)
    finally:
        group.stop()


def cluster_topics(cfg: Config) -> Topics:
    """The topic names of the configured cluster."""
    from startgate.bus.topics import Topics  # noqa: PLC0415

    return Topics(cfg.bus.topic_prefix, cfg.cluster)


def state_filters(topics: Topics) -> list[str]:
    """The subscriptions that carry retained state."""
    return [
        topics.all_gate_health,
        topics.all_held,
        topics.all_node_status,
        topics.coordinator_status(),
        topics.all_tickets,
    ]


def drain(rd: Reader, state: ClusterState, *, settle: float, limit: float) -> bool:
    """Apply what arrives until `settle` seconds pass quietly (or `limit` in all); True if it changed."""
    from startgate.bus.inbox import Invalid, Received  # noqa: PLC0415

    changed = False
    deadline = time.monotonic() + limit
    while (remaining := deadline - time.monotonic()) > 0:
        item = rd.inbox.get(min(settle, remaining))
        if item is None:
            break
        if isinstance(item, Invalid):
            state.invalid += 1
        elif isinstance(item, Received):
            changed = state.apply(item.message) or changed
    return changed


def _link_options(cfg: Config) -> LinkOptions:
    from startgate.bus import oneshot  # noqa: PLC0415 - keep `startgate --help` light
    from startgate.config import read_secret  # noqa: PLC0415

    bus = cfg.bus
    password = read_secret(bus.password_file, "bus.password_file") if bus.password_file else None
    return oneshot.LinkOptions(
        brokers=tuple(oneshot.BrokerAddress.parse(b) for b in bus.brokers),
        username=bus.username,
        password=password,
        tls_ca=str(bus.tls_ca) if bus.tls_ca else None,
        tls_cert=str(bus.tls_cert) if bus.tls_cert else None,
        tls_key=str(bus.tls_key) if bus.tls_key else None,
        protocol=bus.protocol,
        keepalive=bus.keepalive_s,
        client_prefix="startgate-cli",
    )


def _retained_from(
    url: str, opts: LinkOptions, filters: list[str], timeout: float
) -> tuple[BrokerState, dict[str, bytes]]:
    """One broker's retained messages, read up to a PINGREQ/PINGRESP barrier (so none is missed)."""
    from startgate.bus import oneshot  # noqa: PLC0415
    from startgate.deadline import Deadline  # noqa: PLC0415

    deadline = Deadline(timeout)
    try:
        conn = oneshot.Connection.open(oneshot.BrokerAddress.parse(url), opts, deadline)
    except (BusError, TimeoutError, OSError) as exc:
        return BrokerState(url, False, str(exc) or "no answer in time"), {}
    try:
        found, denied = conn.retained(filters, deadline)
    except (BusError, TimeoutError, OSError) as exc:
        return BrokerState(url, False, str(exc) or "no answer in time"), {}
    finally:
        conn.close(deadline)
    error = f"subscription denied: {', '.join(sorted(denied))}" if denied else ""
    return BrokerState(url, True, error), found


def read_state(cfg: Config) -> ClusterState:
    """The retained state from every broker that answers, read in parallel (BrokerUnavailableError: none)."""
    from startgate.bus.inbox import Invalid, validate  # noqa: PLC0415
    from startgate.bus.values import Message  # noqa: PLC0415

    topics = cluster_topics(cfg)
    opts = _link_options(cfg)
    filters = state_filters(topics)
    timeout = cfg.bus.connect_timeout_s + 1.0
    with ThreadPoolExecutor(max_workers=len(cfg.bus.brokers)) as pool:
        results = list(pool.map(lambda url: _retained_from(url, opts, filters, timeout), cfg.bus.brokers))
    state = ClusterState(brokers=tuple(b for b, _ in results))
    if not state.reachable:
        why = "; ".join(f"{b.url}: {b.error}" for b in state.brokers)
        raise BrokerUnavailableError(f"no broker answered within {timeout:.1f}s ({why})")
    for broker, found in results:  # brokers in list order: on a tie the first copy stays
        for topic, payload in sorted(found.items()):
            item = validate(topics, Message(topic, payload, True, broker.url))
            if isinstance(item, Invalid):
                state.invalid += 1
            else:
                state.apply(item.message)
    return state


def watch_state(
    cfg: Config, render: Callable[[ClusterState], None], *, updates: int = 0, settle: float = SETTLE_S
) -> None:
    """Call `render` with the retained state, then again after each change (Ctrl-C ends).

    `updates` > 0 stops after that many renders (for scripts and tests).
    """
    topics = cluster_topics(cfg)
    state = ClusterState()
    with reader(cfg, state_filters(topics), who="cli-watch") as rd:
        state.brokers = rd.wait_ready(cfg.bus.connect_timeout_s + 0.5)
        drain(rd, state, settle=settle, limit=5.0)
        shown = 0
        while True:
            render(state)
            shown += 1
            if updates and shown >= updates:
                return
            while not drain(rd, state, settle=settle, limit=3600.0):
                pass


def ask(cfg: Config, command: Command, timeout: float) -> Reply:
    """Publish `command` and return the coordinator's Reply; NoAnswerError after `timeout` seconds."""
    from startgate.bus.inbox import Received  # noqa: PLC0415
    from startgate.bus.messages import Reply  # noqa: PLC0415
    from startgate.bus.mqtt import publisher_from_config  # noqa: PLC0415

    topics = cluster_topics(cfg)
    request_id = command.event_id
    with reader(cfg, [topics.reply(request_id)], who="cli-cmd") as rd:
        rd.wait_ready(cfg.bus.connect_timeout_s + 0.5)
        deadline = time.monotonic() + timeout
        with publisher_from_config(cfg.bus.as_role("admin")) as pub:
            pub.publish(
                topics.command(command.verb),
                command.to_json(),
                timeout=max(0.5, min(timeout, cfg.bus.connect_timeout_s + 3.0)),
            )
        while (remaining := deadline - time.monotonic()) > 0:
            item = rd.inbox.get(min(remaining, 0.5))
            msg = item.message if isinstance(item, Received) else None
            if isinstance(msg, Reply) and msg.request_id == request_id:
                return msg
    raise NoAnswerError(
        f"no answer from the coordinator within {timeout:g}s to {command.verb} request {request_id}: "
        "is a coordinator running? (see `startgate status`)"
    )
