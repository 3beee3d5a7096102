"""`startgate coordinator`: the service around the pure core (systemd startgate-coordinator.service).

This is the one place the adapters meet: the Proxmox API (startgate.coordinator.proxmox/api), the
gate probes, the MQTT brokers (every one in `bus.brokers`, read and written), the pmxcfs-style
leader lock, the state file, systemd notification and the Prometheus endpoint. The loop
(startgate.coordinator.loop) steps the core; this module builds the parts from the config, starts
them in order and stops them cleanly:

1. restore the state file (a bad one is set aside), connect to the brokers (any one will do; the
   others keep reconnecting in the background), and read what they hold retained (held records,
   tickets, the former leader's health) until the stream goes quiet: the state is rebuilt;
2. READY=1 (the core's Started); the lock thread then tries the lock every quarter timeout, and
   the holder leads (reconciles with the API at once, then periodically and after node boots);
3. on SIGTERM: the core's Shutdown (a leader says "stopped"), publications drained, the lock
   released (rmdir, so a follower takes over at once), the state written, the brokers left.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from startgate import guests
from startgate.bus.mqtt import SubscriberGroup, subscribers_from_config
from startgate.bus.topics import Topics
from startgate.config import Config
from startgate.coordinator.api import Pve
from startgate.coordinator.busio import BusIn, BusOut
from startgate.coordinator.lock import LeaderLock
from startgate.coordinator.loop import Loop, LoopOptions
from startgate.coordinator.metrics import Metrics
from startgate.coordinator.ports import Prober, PveOps
from startgate.coordinator.probes import GateProbe
from startgate.coordinator.proxmox import client_from_config
from startgate.coordinator.settings import settings_from_config
from startgate.coordinator.statefile import StateFile, StateWriter
from startgate.core.events import LockAcquired, LockLost, Shutdown, Started
from startgate.core.model import initial_state
from startgate.errors import BusError
from startgate.systemd import Notifier, SystemdNotifier, watchdog_interval

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceOptions:
    """Start-up and shutdown pacing (real seconds)."""

    connect_wait_s: float = 5.0  # how long to wait for a first broker before going on without one
    settle_quiet_s: float = 0.3  # retained replay is over once nothing arrived for this long...
    settle_max_s: float = 3.0  # ...or after this
    drain_s: float = 3.0  # how long shutdown waits for publications to be acknowledged
    # Message ids remembered to drop what several brokers (or QoS 1 redelivery) bring twice;
    # about 150 bytes each, so the full window costs some 10 MiB.
    dedupe_size: int = 65536
    loop: LoopOptions = dataclasses.field(default_factory=LoopOptions)


def instance_id(node: str) -> str:
    """A per-process event-id prefix: the node (shortened) and a random part."""
    return f"{node[:28]}-{uuid.uuid4().hex[:8]}"


class Coordinator:
    """One node's coordinator: build with `from_config`, run with `run(stop)`."""

    def __init__(
        self,
        config: Config,
        *,
        node: str | None = None,
        pve: PveOps | None = None,
        probes: Mapping[str, Prober] | None = None,
        group: SubscriberGroup | None = None,
        notifier: Notifier | None = None,
        options: ServiceOptions | None = None,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.node = node or config.node_name
        self.options = options or ServiceOptions()
        self.settings = settings_from_config(config, self.node)
        self.topics = Topics(config.bus.topic_prefix, config.cluster)
        self.instance = instance_id(self.node)
        c = config.coordinator
        if pve is None:
            rules = guests.rules(config.gates)
            pve = Pve(client_from_config(config.proxmox), rules, up_scale=c.startup_up_scale, mono=mono)
        self.pve: PveOps = pve
        self.probes = (
            probes if probes is not None else {g.name: GateProbe(g, mono=mono) for g in config.gates}
        )
        self.group = group or subscribers_from_config(
            config.bus.as_role("coordinator"),
            client_id=f"startgate-coordinator-{self.node}",
            topics=[self.topics.everything],
        )
        self.notifier = notifier or SystemdNotifier()
        self.state_file = StateFile(c.state_dir)
        self.writer = StateWriter(self.state_file, clock=mono)
        self.lock = LeaderLock(
            c.lock_dir, c.lock_timeout_s, owner_file=c.state_dir / "lock-owner.json", clock=mono
        )
        self.metrics = Metrics(mono)
        self.publisher = BusOut(self.group.subscribers, timeout_s=max(1.0, config.bus.connect_timeout_s))
        state = self.state_file.load(self.settings, self.instance)
        if state is None:
            state = initial_state(self.settings, self.instance)
        else:
            log.info("restored %d held start(s) from %s", len(state.held), self.state_file.path)
        loop_options = dataclasses.replace(self.options.loop, act_workers=c.api_workers)
        wd = watchdog_interval()
        if wd is not None:
            loop_options = dataclasses.replace(loop_options, watchdog_s=min(wd, loop_options.watchdog_s))
        self.bus_in = BusIn(
            None,
            self.topics,
            counters=self.group.counters,
            dedupe_size=self.options.dedupe_size,
            own_prefix=self.instance,
        )
        self.loop = Loop(
            state,
            pve=self.pve,
            probes=self.probes,
            publisher=self.publisher,
            topics=self.topics,
            notifier=self.notifier,
            persister=self.writer,
            metrics=self.metrics,
            options=loop_options,
            inbox=self.group.inbox,
            ingest=self.bus_in.handle,
            wall=wall,
            mono=mono,
        )

        self._mono = mono
        self._lock_stop = threading.Event()
        self._lock_thread = threading.Thread(target=self._lock_loop, name="leader-lock", daemon=True)
        self._metrics_server: Any = None
        self.ready = threading.Event()

    # -- the lock ------------------------------------------------------------------------------
    def _lock_loop(self) -> None:
        held = False
        while True:
            now_held = self.lock.tick()
            if now_held != held:
                held = now_held
                self.loop.put(
                    LockAcquired() if held else LockLost(self.lock.problem or "the lock was taken over")
                )
            if self._lock_stop.wait(self.lock.refresh_every):
                return

    # -- run -----------------------------------------------------------------------------------
    def _settle(self, stop: threading.Event) -> None:
        """Step the retained replay until it is over: the state is rebuilt from the bus.

        The replay is over once no retained message arrived for `settle_quiet_s` (live traffic,
        which never stops on a busy cluster, does not count), or after `settle_max_s`.
        """
        o = self.options
        end = self._mono() + o.settle_max_s
        quiet_until = self._mono() + o.settle_quiet_s
        seen = self.bus_in.retained
        while not stop.is_set() and self._mono() < min(end, quiet_until):
            self.loop.run_once(max(0.0, min(0.05, min(end, quiet_until) - self._mono())))
            if self.bus_in.retained != seen:
                seen = self.bus_in.retained
                quiet_until = self._mono() + o.settle_quiet_s

    def start(self, stop: threading.Event | None = None) -> None:
        """Connect, rebuild, tell systemd READY=1, and start contending for the lock."""
        stop = stop or threading.Event()
        # A release hops over several threads (loop, publisher, paho, a worker); with Python's
        # default 5 ms GIL switch interval each hop can wait that long behind a busy loop.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
        self.notifier.status("starting: connecting to the brokers")
        if self.config.coordinator.metrics_listen:
            self._metrics_server = self.metrics.serve(self.config.coordinator.metrics_listen)
        self.writer.start()
        self.publisher.start()
        self.group.start()
        try:
            self.group.wait_ready(self.options.connect_wait_s, every=False)
        except BusError as exc:
            log.warning("no broker answered yet (%s); going on, they are retried in the background", exc)
        self._settle(stop)
        self.loop.feed(Started())
        self.ready.set()
        self._lock_thread.start()

    def run(self, stop: threading.Event) -> None:
        """Run until `stop` is set, then shut down cleanly."""
        self.start(stop)
        try:
            while not stop.is_set():
                self.loop.run_once(0.2)
                self.metrics.refresh(self.loop.state, self.group.counters.snapshot())
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Say "stopped", drain the publications, release the lock, write the state, disconnect."""
        self._lock_stop.set()
        if self._lock_thread.is_alive():
            self._lock_thread.join(2.0)
        self.loop.feed(Shutdown())
        self.publisher.close(self.options.drain_s)
        self.lock.release()
        self.writer.close(self.loop.state)
        self.bus_in.stop()
        self.group.stop()
        self.loop.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        log.info("stopped (%d held start(s) saved)", len(self.loop.state.held))
