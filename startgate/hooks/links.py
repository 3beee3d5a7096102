"""How the node agent reaches the bus: the `AgentLink` interface and its two implementations.

- `PahoLink`: the bus adapter's paho `Subscriber` (no subscriptions; a Last Will; paho's own
  keepalive and reconnects). The first broker in `bus.brokers` that answers is used; when the
  link stays down, the agent asks again and the list is tried from the top.
- `OneshotLink`: startgate.bus.oneshot, synchronous and thread-free: one connection, a PINGREQ
  after half a keepalive of silence, a fresh connection (with back-off) when it breaks.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from startgate.bus.mqtt import ClientSettings, LinkUp, Subscriber
from startgate.bus.mqtt import Will as PahoWill
from startgate.bus.oneshot import Connection, LinkOptions, Outgoing, Will, connect_first
from startgate.deadline import Deadline
from startgate.errors import BrokerUnavailableError, BusError, NotAuthorizedError

if TYPE_CHECKING:
    from collections.abc import Callable


class AgentLink(Protocol):
    """The agent's view of the bus: one connection with a Last Will, QoS 1 publishes, liveness."""

    def connected(self) -> bool:
        """True while a connection is believed open."""

    def connect(self, will: Will) -> None:
        """Open a connection with this Last Will (BusError if no broker answers)."""

    def publish(self, messages: list[Outgoing]) -> None:
        """Publish with QoS 1 and return once every message is acked (BusError otherwise)."""

    def keepalive(self) -> None:
        """Prove the connection alive when it has been idle (BusError if it is not)."""

    def close(self) -> None:
        """End the connection cleanly (the Will is not published)."""

    def drop(self) -> None:
        """Forget a broken connection (the broker publishes the Will)."""

    def relinked(self) -> bool:
        """True once after the link came back on its own (the agent then says "online" again)."""


class OneshotLink:
    """AgentLink on startgate.bus.oneshot: synchronous, every operation bounded by `timeout_s`."""

    def __init__(
        self, opts: LinkOptions, timeout_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.opts = opts
        self.timeout_s = timeout_s
        self.clock = clock
        self.conn: Connection | None = None
        self.last_io = 0.0

    def connected(self) -> bool:
        """True while a connection is open."""
        return self.conn is not None

    def connect(self, will: Will) -> None:
        """Connect to the first broker that answers."""
        self.drop()
        self.conn = connect_first(self.opts, Deadline(self.timeout_s, self.clock), will=will)
        self.last_io = self.clock()

    def _conn(self) -> Connection:
        if self.conn is None:
            raise BusError("not connected")
        return self.conn

    def publish(self, messages: list[Outgoing]) -> None:
        """Publish with QoS 1, waiting for every PUBACK."""
        try:
            self._conn().publish(messages, Deadline(self.timeout_s, self.clock))
        except NotAuthorizedError:
            raise  # a refused publish (v5 PUBACK 0x87) leaves the connection intact
        except BusError:
            self.drop()
            raise
        self.last_io = self.clock()

    def keepalive(self) -> None:
        """PINGREQ when idle for half the keepalive interval."""
        if self.clock() - self.last_io < self.opts.keepalive / 2:
            return
        try:
            self._conn().ping(Deadline(self.timeout_s, self.clock))
        except BusError:
            self.drop()
            raise
        self.last_io = self.clock()

    def close(self) -> None:
        """Send DISCONNECT and close."""
        if self.conn is not None:
            self.conn.close(Deadline(min(1.0, self.timeout_s), self.clock))
            self.conn = None

    def drop(self) -> None:
        """Close the socket without DISCONNECT."""
        if self.conn is not None:
            self.conn.abort()
            self.conn = None

    def relinked(self) -> bool:
        """Never: this link only comes back when the agent reconnects it."""
        return False


class PahoLink:
    """AgentLink on the bus adapter's paho Subscriber (see the module docstring)."""

    def __init__(
        self, brokers: list[str], settings: ClientSettings, client_id: str, timeout_s: float
    ) -> None:
        self.brokers = brokers
        self.settings = settings
        self.client_id = client_id
        self.timeout_s = timeout_s
        self.sub: Subscriber | None = None
        self._relinked = False

    def _drain_notices(self) -> None:
        sub = self.sub
        while sub is not None:
            item = sub.get(0)
            if item is None:
                return
            if isinstance(item, LinkUp):
                self._relinked = True

    def connected(self) -> bool:
        """True while paho holds an accepted connection."""
        self._drain_notices()
        return self.sub is not None and self.sub.connected

    def connect(self, will: Will) -> None:
        """Start a Subscriber on the first broker that answers within the timeout."""
        self.drop()
        problems = []
        for url in self.brokers:
            sub = Subscriber(
                url,
                self.settings,
                client_id=self.client_id,
                will=PahoWill(will.topic, will.payload, will.retain),
                persistent=False,
            ).start()
            try:
                sub.wait_ready(self.timeout_s)
            except BusError as exc:
                sub.stop()
                problems.append(str(exc))
                continue
            self.sub = sub
            self._drain_notices()
            self._relinked = False  # the first LinkUp is this connect itself
            return
        raise BrokerUnavailableError(
            "no broker answered: " + "; ".join(problems or ["no brokers configured"])
        )

    def publish(self, messages: list[Outgoing]) -> None:
        """Publish each message with QoS 1, waiting for its PUBACK."""
        if self.sub is None:
            raise BrokerUnavailableError("not connected")
        for msg in messages:
            self.sub.publish(msg.topic, msg.payload, retain=msg.retain, timeout=self.timeout_s)

    def keepalive(self) -> None:
        """paho keeps the link alive itself; report a link that is down."""
        if not self.connected():
            raise BrokerUnavailableError("the link to the broker is down")

    def close(self) -> None:
        """Disconnect cleanly."""
        if self.sub is not None:
            self.sub.stop()
            self.sub = None

    def drop(self) -> None:
        """Stop the Subscriber (a clean end; only a dead process makes the broker publish the Will)."""
        self.close()

    def relinked(self) -> bool:
        """True once after paho reconnected by itself."""
        self._drain_notices()
        came_back, self._relinked = self._relinked, False
        return came_back
