"""The bus side of a hookscript run for a gate member: retained records, checks, publish or spool.

For a member's pre-start (`MemberRun.check`): read the retained ticket, held record and gate
healths in one round trip; honour a valid one-shot ticket; believe fresh retained health, run
the gate's own check otherwise; allow, or hold (retained `held/<vmid>` plus the event). Every
message goes out with QoS 1 after any older spooled ones, or into the spool when no broker
answers in time.

Time: the run's deadline is split into a broker phase (connect and read the retained records,
at most `bus.connect_timeout_s` and 30% of the total), a check phase (the gates' own checks,
leaving 30% for publishing, or 10% for spooling when there is no broker), and a publish phase;
whatever a phase does not use flows to the next.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from startgate.bus.oneshot import BrokerAddress, Connection, LinkOptions, Outgoing, connect_first
from startgate.bus.topics import Topics
from startgate.errors import BusError, SpoolError
from startgate.hooks import payloads
from startgate.hooks.decide import (
    GateState,
    TicketUse,
    describe_gates,
    hold_line,
    retained_gate,
    usable_ticket,
)
from startgate.hooks.run import EXIT_ALLOW, EXIT_HOLD, PRE_START, Outcome, label
from startgate.hooks.spool import Spool

if TYPE_CHECKING:
    from startgate.core import guestconf
    from startgate.deadline import Deadline
    from startgate.hooks.run import HookRun
    from startgate.hooks.settings import GateSpec, HookSettings

_DRAIN_LIMIT = 50  # old spooled messages a hook forwards before its own (the agent does the rest)


def link_options(settings: HookSettings, client_prefix: str = "startgate-hook") -> LinkOptions:
    """The one-shot client's options from the settings (reads the broker password file, if any)."""
    bus = settings.bus
    password = None
    if bus.password_file:
        try:
            password = Path(bus.password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise BusError(f"bus.password_file {bus.password_file}: {exc.strerror}") from None
    return LinkOptions(
        brokers=tuple(BrokerAddress.parse(b) for b in bus.brokers),
        username=bus.username,
        password=password,
        tls_ca=bus.tls_ca,
        tls_cert=bus.tls_cert,
        tls_key=bus.tls_key,
        protocol=bus.protocol,
        keepalive=bus.keepalive_s,
        client_prefix=client_prefix,
    )


class MemberRun:
    """The bus side of one hook run (see the module docstring)."""

    def __init__(self, run: HookRun) -> None:
        self.run = run
        self.settings = run.settings
        self.vmid = run.vmid
        self.node = run.node
        self.deadline: Deadline = run.deadline
        self.topics = Topics(self.settings.bus.topic_prefix, self.settings.cluster)
        self.spool = Spool(self.settings.spool_dir)
        self.total = max(0.1, run.deadline.remaining())
        self.conn: Connection | None = None
        self.bus_problem = ""

    # -- outcomes ------------------------------------------------------------------------------
    def report(self, guest_type: str, phase: str, gates: tuple[str, ...]) -> None:
        """Publish a lifecycle event with no decision (post-start, pre-stop, post-stop)."""
        event = payloads.guest_event(
            time=self.run.clock.wall(),
            vmid=self.vmid,
            node=self.node,
            guest_type=guest_type,
            phase=phase,
            gates=gates,
        )
        self.deliver([self.event_message(event)])

    def allow(
        self, guest_type: str, reason: str, gates: tuple[str, ...], ticket: str | None = None
    ) -> Outcome:
        """Allow the start: publish the event, print why."""
        event = payloads.guest_event(
            time=self.run.clock.wall(),
            vmid=self.vmid,
            node=self.node,
            guest_type=guest_type,
            phase=PRE_START,
            decision="allow",
            reason=reason,
            gates=gates,
            ticket=ticket,
        )
        self.deliver([self.event_message(event)])
        return Outcome(EXIT_ALLOW, f"startgate: {label(guest_type, self.vmid)} may start: {reason}")

    def internal_error(self, error: str, guest_type: str, gates: tuple[str, ...] = ()) -> Outcome:
        """Allow the start, and say loudly why nothing was checked (task log and bus)."""
        line = (
            f"startgate: ERROR: allowing start of {label(guest_type, self.vmid)} "
            f"without checking its gates: {error}"
        )
        event = payloads.guest_event(
            time=self.run.clock.wall(),
            vmid=self.vmid,
            node=self.node,
            guest_type=guest_type,
            phase=PRE_START,
            decision="allow",
            reason="internal error: start allowed unchecked",
            gates=gates,
            error=error,
        )
        self.deliver([self.event_message(event)])
        return Outcome(EXIT_ALLOW, line)

    def check(self, guest: guestconf.GuestConfig, gates: tuple[str, ...]) -> Outcome:
        """A member's pre-start with no shortcut: ticket, then the gates' health; allow or hold."""
        retained = self.read_retained(gates)
        ticket = usable_ticket(
            retained.get(self.topics.ticket(self.vmid)),
            self.vmid,
            self.run.clock.wall(),
            self.consumed_ticket(),
        )
        if ticket is not None:
            return self.allow_ticket(guest, ticket, gates)
        states = self.gate_states([g for g in self.settings.gates if g.name in gates], retained)
        waiting = [s for s in states if not s.healthy]
        if not waiting:
            detail = "; ".join(f"{s.gate}: {s.detail}" for s in states)
            verb = "is" if len(states) == 1 else "are"
            return self.allow(guest.type, f"{describe_gates(states)} {verb} healthy ({detail})", gates)
        return self.hold(guest, gates, waiting, retained.get(self.topics.held(self.vmid)))

    def allow_ticket(
        self, guest: guestconf.GuestConfig, ticket: TicketUse, gates: tuple[str, ...]
    ) -> Outcome:
        """Allow a start released by a one-shot ticket, and remember that this ticket is used."""
        by = f" by {ticket.requested_by}" if ticket.requested_by else ""
        reason = f"released{by} with one-shot ticket {ticket.ticket_id}"
        problem = self.record_ticket(ticket.ticket_id)
        if problem:
            reason += f" (could not record its use: {problem})"
        return self.allow(guest.type, reason, gates, ticket=ticket.ticket_id)

    def hold(
        self,
        guest: guestconf.GuestConfig,
        gates: tuple[str, ...],
        waiting: list[GateState],
        previous_payload: bytes | None,
    ) -> Outcome:
        """Refuse the start: publish (or spool) the held record and the event, print one line."""
        from startgate.hooks.ha import ha_managed  # noqa: PLC0415 - only a held start needs the HA files

        now = self.run.clock.wall()
        previous = payloads.decode(previous_payload)
        if previous is None and self.conn is None:
            spooled = self.spool.latest("held", str(self.vmid))
            previous = payloads.decode(spooled.payload) if spooled else None
        ha = ha_managed(self.settings.config_dir, self.vmid)
        reason = "; ".join(f"{s.gate}: {s.detail}" for s in waiting)
        held = payloads.held_start(
            now=now,
            vmid=self.vmid,
            node=self.node,
            guest_type=guest.type,
            gates=gates,
            previous=previous,
            ha=ha,
            reason=reason,
            name=guest.name,
            startup_order=guest.startup.order,
        )
        event = payloads.guest_event(
            time=now,
            vmid=self.vmid,
            node=self.node,
            guest_type=guest.type,
            phase=PRE_START,
            decision="hold",
            reason=reason,
            gates=gates,
            ha=ha,
        )
        held_msg = Outgoing(self.topics.held(self.vmid), payloads.encode(held), retain=True)
        published = self.deliver([held_msg, self.event_message(event)])
        return Outcome(EXIT_HOLD, hold_line(guest.label, waiting, spooled=not published))

    # -- the bus -------------------------------------------------------------------------------
    def event_message(self, event: dict[str, object]) -> Outgoing:
        """The guest event as a message to publish."""
        return Outgoing(self.topics.guest_event(self.vmid), payloads.encode(event), retain=False)

    def connect(self, share: float) -> Connection | None:
        """Connect to the first broker that answers within `share` of the total time; None if none."""
        if self.conn is not None or self.bus_problem:
            return self.conn
        try:
            self.conn = connect_first(link_options(self.settings), self.deadline.within(share))
        except BusError as exc:
            self.bus_problem = str(exc)
        return self.conn

    def close(self) -> None:
        """End the connection cleanly, if one is open."""
        if self.conn is not None:
            self.conn.close(self.deadline)
            self.conn = None

    def read_retained(self, gates: tuple[str, ...]) -> dict[str, bytes]:
        """The retained ticket, held record and gate healths this decision needs ({} if no broker)."""
        budget = min(self.settings.bus.connect_timeout_s, 0.3 * self.total)
        conn = self.connect(budget)
        if conn is None:
            return {}
        filters = [self.topics.ticket(self.vmid), self.topics.held(self.vmid)]
        filters += [self.topics.gate_health(g) for g in gates]
        try:
            found, _denied = conn.retained(filters, self.deadline.within(budget))
        except BusError as exc:
            self.bus_problem = str(exc)
            conn.abort()
            self.conn = None
            return {}
        return found

    def deliver(self, messages: list[Outgoing]) -> bool:
        """Publish `messages` (after any older spooled ones); spool them if that fails. True if published."""
        reserve = 0.05 * self.total
        conn = self.connect(min(self.settings.bus.connect_timeout_s, 0.5 * self.total))
        if conn is not None:
            try:
                if self.publish_in_order(
                    conn, messages, self.deadline.within(self.deadline.remaining() - reserve)
                ):
                    return True
            except (BusError, SpoolError) as exc:
                self.bus_problem = str(exc)
                conn.abort()
                self.conn = None
        for msg in messages:
            self.spool_one(msg)
        return False

    def publish_in_order(self, conn: Connection, messages: list[Outgoing], deadline: Deadline) -> bool:
        """Publish after the spooled backlog; False (publish nothing) when the backlog must go first."""
        if not self.spool.names():
            conn.publish(messages, deadline)
            return True
        lock = self.spool.lock(wait=False)
        if lock is None:
            return False  # the agent is draining right now: queue behind it
        with lock:
            backlog = self.spool.pending(limit=_DRAIN_LIMIT + 1)
            if len(backlog) > _DRAIN_LIMIT:
                return False  # a long backlog is the agent's job; queue behind it
            conn.publish([Outgoing(b.topic, b.payload, b.retain) for b in backlog] + messages, deadline)
            for item in backlog:
                self.spool.remove(item)
        return True

    def spool_one(self, msg: Outgoing) -> None:
        """Store one message in the spool; if even that fails, say so (the message is lost)."""
        ref = self.topics.parse(msg.topic)
        try:
            self.spool.put(msg.topic, msg.payload, msg.retain, kind=ref.kind, key=str(ref.key))
        except SpoolError as exc:
            self.run.say(
                f"startgate: ERROR: message for {msg.topic} lost: no broker ({self.bus_problem}) and {exc}"
            )

    # -- gates and tickets ---------------------------------------------------------------------
    def gate_states(self, gates: list[GateSpec], retained: dict[str, bytes]) -> list[GateState]:
        """Each member gate's state: fresh retained health, else the gate's own check."""
        from startgate.hooks.probe import probe  # noqa: PLC0415 - only needed when retained health is stale

        states: list[GateState] = []
        now = self.run.clock.wall()
        for i, gate in enumerate(gates):
            state = retained_gate(
                gate.name,
                retained.get(self.topics.gate_health(gate.name)),
                now=now,
                max_age=self.settings.health_max_age_s,
                node=self.node,
                node_ready=gate.check.node_ready,
            )
            if state is None:
                reserve = (0.3 if self.conn is not None else 0.1) * self.total
                share = (self.deadline.remaining() - reserve) / (len(gates) - i)
                result = probe(gate.check, self.deadline.within(share))
                state = GateState(gate.name, result.healthy, result.detail, "probe")
            states.append(state)
        return states

    def ticket_file(self) -> Path:
        """Where this node records the last ticket it honoured for this guest."""
        return Path(self.settings.state_dir) / "hook" / "tickets" / str(self.vmid)

    def consumed_ticket(self) -> str | None:
        """The id of the last ticket honoured for this guest on this node, if any."""
        try:
            return self.ticket_file().read_text(encoding="utf-8").strip() or None
        except OSError:
            return None

    def record_ticket(self, ticket_id: str) -> str:
        """Remember that `ticket_id` is used (atomically); an error text, or "" when recorded."""
        path = self.ticket_file()
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(ticket_id + "\n", encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:
            return f"{path}: {exc.strerror}"
        return ""
