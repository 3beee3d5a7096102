"""One hookscript run: decide (pre-start), report the phase on the bus (or spool it), within a deadline.

pre-start allows at once (exit 0) when the guest is a member of no gate, is a live-migration
target (`PVE_MIGRATED_FROM` set; proxmox/qemu-server `vm_start_nolock` sets it before running the
hook), carries a `lock:` (backup, snapshot rollback), has a valid one-shot release ticket, or
when every gate it belongs to is healthy. Otherwise it holds: it publishes the retained
`held/<vmid>` record and a `guest/<vmid>/event`, prints one line, and exits 1. The other phases
publish their event and exit 0. Internal errors in pre-start allow the start and say so loudly.

Time: one absolute deadline (`hook.max_seconds` minus a margin for interpreter start and exit)
is split into a broker phase (connect, read the retained records), a check phase (the gates'
own checks, for gates with no fresh retained health) and a publish phase; whatever is left
unused flows to the next. With no broker answering, messages go to the spool instead.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from startgate.bus.oneshot import BrokerAddress, Connection, Deadline, LinkOptions, Outgoing, connect_first
from startgate.bus.topics import Topics
from startgate.core import guestconf
from startgate.core.membership import GateRule, memberships
from startgate.errors import BusError, GuestConfigError, SpoolError
from startgate.hooks import payloads
from startgate.hooks.decide import (
    GateState,
    TicketUse,
    describe_gates,
    hold_line,
    retained_gate,
    usable_ticket,
)
from startgate.hooks.spool import Spool

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from startgate.hooks.settings import GateSpec, HookSettings

PRE_START = "pre-start"
PHASES = ("pre-start", "post-start", "pre-stop", "post-stop")
EXIT_ALLOW = 0
EXIT_HOLD = 1
MARGIN_S = 0.35  # interpreter start-up before the deadline starts, and exit after it ends
_DRAIN_LIMIT = 50  # old spooled messages a hook forwards before its own (the agent does the rest)


class Clock(NamedTuple):
    """Injected clocks: wall time for payloads and freshness, monotonic time for deadlines."""

    wall: Callable[[], float] = time.time
    mono: Callable[[], float] = time.monotonic


class Outcome(NamedTuple):
    """What a run decided: the exit code and the one line for the task log (or None)."""

    code: int
    line: str | None


def link_options(settings: HookSettings) -> LinkOptions:
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
        client_prefix="startgate-hook",
    )


def guest_config_path(settings: HookSettings, node: str, vmid: int) -> tuple[Path, str] | None:
    """The guest's config file on this node and its type, or None if there is none."""
    base = Path(settings.config_dir) / "nodes" / node
    for sub, guest_type in (("qemu-server", guestconf.QEMU), ("lxc", guestconf.LXC)):
        path = base / sub / f"{vmid}.conf"
        if path.exists():  # not is_file(): a config that cannot be read must say so, not vanish
            return path, guest_type
    return None


class HookRun:
    """One call of the hookscript for one guest and phase."""

    def __init__(
        self,
        settings: HookSettings,
        vmid: int,
        phase: str,
        env: Mapping[str, str],
        deadline: Deadline,
        *,
        clock: Clock | None = None,
        say: Callable[[str], None] = print,
    ) -> None:
        self.settings = settings
        self.vmid = vmid
        self.phase = phase
        self.env = env
        self.deadline = deadline
        self.clock = clock or Clock()
        self.say = say
        self.node = settings.node_name
        self.topics = Topics(settings.bus.topic_prefix, settings.cluster)
        self.spool = Spool(settings.spool_dir)
        self.total = max(0.1, deadline.remaining())
        self.conn: Connection | None = None
        self.bus_problem = ""

    # -- entry ---------------------------------------------------------------------------------
    def run(self) -> Outcome:
        """Run the phase; never raises for trouble outside (broker, checks, files)."""
        try:
            if self.phase == PRE_START:
                try:
                    return self.pre_start()
                except GuestConfigError as exc:
                    return self.internal_error(str(exc), guestconf.QEMU)
            found = guest_config_path(self.settings, self.node, self.vmid)
            guest_type = found[1] if found else guestconf.QEMU
            event = payloads.guest_event(
                time=self.clock.wall(),
                vmid=self.vmid,
                node=self.node,
                guest_type=guest_type,
                phase=self.phase,
            )
            self.deliver([self.event_message(event)])
            return Outcome(EXIT_ALLOW, None)
        finally:
            self.disconnect()

    def internal_error(self, error: str, guest_type: str, gates: tuple[str, ...] = ()) -> Outcome:
        """Allow the start, and say loudly why nothing was checked (task log and bus)."""
        label = f"{'CT' if guest_type == guestconf.LXC else 'VM'} {self.vmid}"
        line = f"startgate: ERROR: allowing start of {label} without checking its gates: {error}"
        event = payloads.guest_event(
            time=self.clock.wall(),
            vmid=self.vmid,
            node=self.node,
            guest_type=guest_type,
            phase=self.phase,
            decision="allow",
            reason="internal error: start allowed unchecked",
            gates=gates,
            error=error,
        )
        self.deliver([self.event_message(event)])
        return Outcome(EXIT_ALLOW, line)

    # -- pre-start -----------------------------------------------------------------------------
    def read_guest(self) -> guestconf.GuestConfig:
        """Read and parse this guest's config (GuestConfigError if missing or not a config)."""
        found = guest_config_path(self.settings, self.node, self.vmid)
        if found is None:
            where = Path(self.settings.config_dir) / "nodes" / self.node
            raise GuestConfigError(f"no config for guest {self.vmid} under {where}/{{qemu-server,lxc}}/")
        path, guest_type = found
        try:
            text = path.read_bytes().decode("utf-8", errors="replace")
        except OSError as exc:
            raise GuestConfigError(f"{path}: cannot read: {exc.strerror}") from None
        return guestconf.parse(text, self.vmid, guest_type, source=str(path))

    def pre_start(self) -> Outcome:
        """Decide whether this start may go ahead (see the module docstring)."""
        migrated = self.env.get("PVE_MIGRATED_FROM", "")
        if migrated:
            return self.allow(guestconf.QEMU, None, f"live-migration target (from {migrated})", ())
        guest = self.read_guest()
        rules = [GateRule.of(g) for g in self.settings.gates]
        members = memberships(guest, rules)
        gates = tuple(m.gate for m in members)
        if not members:
            return self.allow(guest.type, guest.label, "not a member of any gate", ())
        if guest.lock:
            return self.allow(guest.type, guest.label, f"its config is locked ({guest.lock})", gates)
        retained = self.read_retained(gates)
        ticket = usable_ticket(
            retained.get(self.topics.ticket(self.vmid)), self.vmid, self.clock.wall(), self.consumed_ticket()
        )
        if ticket is not None:
            return self.allow_ticket(guest, ticket, gates)
        states = self.gate_states([g for g in self.settings.gates if g.name in gates], retained)
        waiting = [s for s in states if not s.healthy]
        if not waiting:
            detail = "; ".join(f"{s.gate}: {s.detail}" for s in states)
            verb = "is" if len(states) == 1 else "are"
            return self.allow(
                guest.type, guest.label, f"{describe_gates(states)} {verb} healthy ({detail})", gates
            )
        return self.hold(guest, gates, waiting, retained.get(self.topics.held(self.vmid)))

    def allow(self, guest_type: str, label: str | None, reason: str, gates: tuple[str, ...]) -> Outcome:
        """Allow the start: publish the event, print why."""
        event = payloads.guest_event(
            time=self.clock.wall(),
            vmid=self.vmid,
            node=self.node,
            guest_type=guest_type,
            phase=PRE_START,
            decision="allow",
            reason=reason,
            gates=gates,
        )
        self.deliver([self.event_message(event)])
        label = label or f"{'CT' if guest_type == guestconf.LXC else 'VM'} {self.vmid}"
        return Outcome(EXIT_ALLOW, f"startgate: {label} may start: {reason}")

    def allow_ticket(
        self, guest: guestconf.GuestConfig, ticket: TicketUse, gates: tuple[str, ...]
    ) -> Outcome:
        """Allow a start released by a one-shot ticket, and remember that this ticket is used."""
        by = f" by {ticket.requested_by}" if ticket.requested_by else ""
        reason = f"released{by} with one-shot ticket {ticket.ticket_id}"
        problem = self.record_ticket(ticket.ticket_id)
        if problem:
            reason += f" (could not record its use: {problem})"
        return self.allow(guest.type, guest.label, reason, gates)

    def hold(
        self,
        guest: guestconf.GuestConfig,
        gates: tuple[str, ...],
        waiting: list[GateState],
        previous_payload: bytes | None,
    ) -> Outcome:
        """Refuse the start: publish (or spool) the held record and the event, print one line."""
        from startgate.hooks.ha import ha_managed  # noqa: PLC0415 - only a held start needs the HA files

        now = self.clock.wall()
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

    def disconnect(self) -> None:
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
        """Store one message in the spool; if even that fails, say so on stderr (it is lost)."""
        ref = self.topics.parse(msg.topic)
        try:
            self.spool.put(msg.topic, msg.payload, msg.retain, kind=ref.kind, key=str(ref.key))
        except SpoolError as exc:
            self.say(
                f"startgate: ERROR: message for {msg.topic} lost: no broker ({self.bus_problem}) and {exc}"
            )

    # -- gates and tickets ---------------------------------------------------------------------
    def gate_states(self, gates: list[GateSpec], retained: dict[str, bytes]) -> list[GateState]:
        """Each member gate's state: fresh retained health, else the gate's own check."""
        from startgate.hooks.probe import probe  # noqa: PLC0415 - only members with gates need it

        states: list[GateState] = []
        now = self.clock.wall()
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
