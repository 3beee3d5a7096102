"""The node agent (`startgate agent`, systemd `startgate-agent.service`, Type=notify).

- Announces the node: the retained `node/<node>/status` (online, boot id, version, whether the
  hookscript file exists and is executable, how many messages wait in the spool), with a Last
  Will that says offline when the agent dies; before a clean disconnect it publishes offline
  itself (a Will fires only on an unclean end).
- Sends `node/<node>/event` "boot" once per boot id (from /proc/sys/kernel/random/boot_id; the
  last announced id is kept in `<state_dir>/agent/boot_id`), and "shutdown" when stopped.
- Forwards the spool to the broker in order, deleting each file only after the broker acked it,
  and keeps watching it: the loop wakes every `poll_s` (an Event wait, not a busy loop).
- Tells systemd READY=1 after its first connection attempt (a broker that is down must not hold
  up boot), WATCHDOG=1 from the main loop, and a STATUS= line.

The boot and shutdown events go through the spool too: they are history, durable, and reach the
broker in order with the hooks' messages. The status is live state and is never spooled (a
stale "offline" forwarded late would overwrite "online").

The bus is reached through `AgentLink` (startgate.hooks.links): `PahoLink` on the bus adapter's
paho Subscriber (what the service uses), or `OneshotLink` on startgate.bus.oneshot (synchronous,
no thread; `startgate agent --link oneshot`). Both are tested against a real Mosquitto.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from startgate import __version__
from startgate.bus.messages import HookStatus, NodeEvent, NodeStatus
from startgate.bus.oneshot import Outgoing, Will
from startgate.bus.topics import Topics
from startgate.errors import BusError, NotAuthorizedError, SpoolError
from startgate.hooks.spool import Spool, Spooled

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    from startgate.hooks.links import AgentLink
    from startgate.hooks.settings import HookSettings
    from startgate.systemd import Notifier

log = logging.getLogger(__name__)

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
_BATCH = 100  # spooled messages per publish round trip


class AgentOptions(NamedTuple):
    """Where the agent reads and keeps things, and how often it looks."""

    boot_id_path: Path = BOOT_ID_PATH
    poll_s: float = 0.5  # how often the spool is looked at
    retry_s: float = 2.0  # how long to wait after a failed connection before the next try
    version: str = __version__


def read_boot_id(path: Path) -> str:
    """This boot's id (the kernel's random boot_id), or "" when it cannot be read."""
    try:
        return path.read_text(encoding="ascii").strip()[:64]
    except (OSError, UnicodeDecodeError):
        return ""


class Agent:
    """The node agent's state and loop (run it with `run(stop)`)."""

    def __init__(
        self,
        settings: HookSettings,
        link: AgentLink,
        notifier: Notifier,
        options: AgentOptions | None = None,
        *,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.link = link
        self.notifier = notifier
        self.options = options or AgentOptions()
        self.wall = wall
        self.mono = mono
        self.node = settings.node_name
        self.topics = Topics(settings.bus.topic_prefix, settings.cluster)
        self.spool = Spool(settings.spool_dir)
        self.state_file = Path(settings.state_dir) / "agent" / "boot_id"
        self.boot_id = read_boot_id(self.options.boot_id_path)
        self.next_try = 0.0
        self.published_status: tuple[object, ...] | None = None
        self.forwarded = 0
        self.problem = ""

    # -- messages ------------------------------------------------------------------------------
    def hook_status(self) -> HookStatus:
        """Whether the hookscript file is in place on this node."""
        path = Path(self.settings.snippet)
        return HookStatus(path=str(path), exists=path.is_file(), executable=os.access(path, os.X_OK))

    def status(self, state: str) -> NodeStatus:
        """The node's status message."""
        return NodeStatus(
            time=self.wall(),
            node=self.node,
            state="online" if state == "online" else "offline",
            boot_id=self.boot_id,
            version=self.options.version,
            hook=self.hook_status(),
            spooled=self.spool.count(),
        )

    def status_message(self, state: str) -> Outgoing:
        """The retained status as a message to publish."""
        return Outgoing(self.topics.node_status(self.node), self.status(state).to_json(), retain=True)

    def will(self) -> Will:
        """The Last Will: this node's status, offline."""
        return Will(self.topics.node_status(self.node), self.status("offline").to_json(), retain=True)

    def node_event(self, kind: str) -> None:
        """Put a boot/shutdown event into the spool (forwarded in order with everything else)."""
        event = NodeEvent(
            time=self.wall(),
            node=self.node,
            kind="boot" if kind == "boot" else "shutdown",
            boot_id=self.boot_id,
        )
        self.spool.put(
            self.topics.node_event(self.node), event.to_json(), False, kind="node_event", key=self.node
        )

    # -- boot ----------------------------------------------------------------------------------
    def announce_boot(self) -> bool:
        """Spool the boot event unless this boot id was announced already; True if spooled now."""
        if not self.boot_id:
            return False
        try:
            last = self.state_file.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            last = ""
        if last == self.boot_id:
            return False
        self.node_event("boot")
        self.state_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.state_file.with_name(".boot_id.tmp")
        tmp.write_text(self.boot_id + "\n", encoding="ascii")
        tmp.replace(self.state_file)
        return True

    # -- the loop ------------------------------------------------------------------------------
    def ensure_connected(self) -> bool:
        """Connect (with the Will) and publish the online status, unless connected or backing off."""
        if self.link.connected():
            if self.link.relinked():  # it came back by itself (paho): say "online" there again
                self.link.publish([self.status_message("online")])
                self.published_status = self.status_key()
            return True
        if self.mono() < self.next_try:
            return False
        try:
            self.link.connect(self.will())
            self.link.publish([self.status_message("online")])
        except BusError as exc:
            self.link.drop()
            self.next_try = self.mono() + self.options.retry_s
            if str(exc) != self.problem:
                log.warning("broker: %s", exc)
            self.problem = str(exc)
            return False
        log.info("connected; node %s online", self.node)
        self.problem = ""
        self.published_status = self.status_key()
        return True

    def status_key(self) -> tuple[object, ...]:
        """What, when it changes, makes the agent publish its status again."""
        hook = self.hook_status()
        return (hook.exists, hook.executable, self.spool.count())

    def drain(self) -> int:
        """Forward spooled messages oldest first, deleting each after its ack; how many went out."""
        sent = 0
        lock = self.spool.lock(wait=True)
        if lock is None:
            return 0
        with lock:
            while True:
                batch = self.spool.pending(limit=_BATCH)
                if not batch:
                    return sent
                try:
                    self.link.publish([Outgoing(b.topic, b.payload, b.retain) for b in batch])
                except NotAuthorizedError:
                    sent += self.drain_one_by_one(batch)
                    continue
                for item in batch:
                    self.spool.remove(item)
                sent += len(batch)

    def drain_one_by_one(self, batch: list[Spooled]) -> int:
        """After the broker refused something in `batch`: send each alone, set the refused ones aside.

        A message the ACL refuses would otherwise block the queue forever; it is renamed
        `<name>.rejected` (kept for the admin) and the rest go on.
        """
        sent = 0
        for item in batch:
            try:
                self.link.publish([Outgoing(item.topic, item.payload, item.retain)])
            except NotAuthorizedError as exc:
                log.error(  # noqa: TRY400 - a refusal, not a crash: no traceback
                    "the broker refused %s (%s): set aside as %s.rejected",
                    item.path.name,
                    exc,
                    item.path.name,
                )
                self.spool.quarantine(item.path, suffix=".rejected")
                continue
            self.spool.remove(item)
            sent += 1
        return sent

    def tick(self) -> None:
        """One pass: connect if needed, forward the spool, keep the link alive, report."""
        if self.ensure_connected():
            try:
                self.forwarded += self.drain()
                key = self.status_key()
                if key != self.published_status:
                    self.link.publish([self.status_message("online")])
                    self.published_status = key
                self.link.keepalive()
            except BusError as exc:
                log.warning("broker: %s; reconnecting", exc)
                self.problem = str(exc)
                self.link.drop()
                self.next_try = self.mono() + self.options.retry_s
            except SpoolError as exc:
                log.error("%s", exc)  # noqa: TRY400 - the message says it all; a traceback adds nothing
                self.problem = str(exc)
        self.notifier.watchdog()
        self.notifier.status(self.status_text())

    def status_text(self) -> str:
        """The STATUS= line."""
        bus = "mqtt=connected" if self.link.connected() else f"mqtt=disconnected ({self.problem[:80]})"
        return f"{bus}; spooled={self.spool.count()}; forwarded={self.forwarded}; boot_id={self.boot_id[:8]}"

    def run(self, stop: threading.Event) -> None:
        """Run until `stop` is set, then announce the shutdown and go offline cleanly."""
        self.notifier.status("starting")
        try:
            self.announce_boot()
        except (OSError, SpoolError) as exc:
            log.error("cannot record the boot event: %s", exc)  # noqa: TRY400 - no traceback needed
        self.tick()
        self.notifier.ready()
        while not stop.wait(self.options.poll_s):
            self.tick()
        self.shutdown()

    def shutdown(self) -> None:
        """Spool the shutdown event, forward what can go, publish offline, disconnect cleanly."""
        self.notifier.stopping()
        try:
            self.node_event("shutdown")
        except SpoolError as exc:
            log.error("cannot record the shutdown event: %s", exc)  # noqa: TRY400 - no traceback needed
        self.next_try = 0.0
        if self.ensure_connected():
            try:
                self.forwarded += self.drain()
                self.link.publish([self.status_message("offline")])
                self.link.close()
            except (BusError, SpoolError) as exc:
                log.warning("shutdown: %s", exc)
                self.link.drop()
        log.info("stopped; %d message(s) left in the spool", self.spool.count())
