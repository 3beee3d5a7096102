"""The service loop: the one thread that owns the core's state, steps it, and carries out its actions.

Everything else talks to it through one queue: bus messages (startgate.coordinator.busio), lock
changes, and the answers of worker threads. Blocking work never runs on the loop: API calls go to
two bounded pools (`act`: starts, HA changes, task polls; `look`: guest look-ups and
reconciliation, so a long reconcile never delays a start), probes to a pool of their own, and
publications to the per-broker publisher threads. Every answer re-enters the loop as a core
event. The loop sleeps until the earliest of: the core's Wake, a followed task's next poll, the
watchdog.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from startgate.bus import messages as m
from startgate.bus.topics import Topics
from startgate.bus.values import Inbound, LinkUp
from startgate.bus.values import Message as BusMessage
from startgate.coordinator.api import TaskStatus
from startgate.coordinator.busio import cleared_topic, topic_for
from startgate.coordinator.metrics import Metrics
from startgate.coordinator.ports import Inbox, Persister, Prober, Publisher, PveOps
from startgate.core import actions as a
from startgate.core.events import (
    BusConnected,
    Event,
    HaStateResult,
    ProbeResult,
    ReconcileDone,
    StartResult,
    TaskResult,
    Tick,
)
from startgate.core.machine import step
from startgate.core.model import State
from startgate.errors import ProxmoxError
from startgate.systemd import Notifier

log = logging.getLogger(__name__)
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


@dataclass(frozen=True)
class Finished:
    """A worker's job ended: forget it as in flight, then step its events."""

    key: tuple[str, str]
    events: tuple[Event, ...] = ()
    task: TaskStatus | None = None  # a task poll's answer


Item = Event | Inbound | Finished


@dataclass
class _Follow:
    vmid: int
    node: str
    upid: str
    since: float
    due: float
    errors: int = 0


@dataclass(frozen=True)
class LoopOptions:
    """Pool sizes and polling pace (real seconds)."""

    act_workers: int = 8
    look_workers: int = 2
    publish_wait_s: float = 3.0  # how long a start waits for the health/ticket it depends on
    poll_min_s: float = 0.05  # a followed task is polled soon after it starts...
    poll_max_s: float = 2.0  # ...then less often, up to this
    watchdog_s: float = 5.0
    follow_max_s: float = 900.0  # stop following a task that never ends


class Loop:
    """The loop and its executor (see the module docstring)."""

    def __init__(
        self,
        state: State,
        *,
        pve: PveOps,
        probes: Mapping[str, Prober],
        publisher: Publisher,
        topics: Topics,
        notifier: Notifier,
        persister: Persister,
        metrics: Metrics,
        options: LoopOptions | None = None,
        inbox: Inbox | None = None,
        ingest: Callable[[Inbound], Event | None] | None = None,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state
        self.pve = pve
        self.probes = probes
        self.publisher = publisher
        self.topics = topics
        self.notifier = notifier
        self.persister = persister
        self.metrics = metrics
        self.options = options or LoopOptions()
        self.wall = wall
        self.mono = mono
        # One queue for everything: the brokers' raw messages (paho's network threads put them
        # here, so a message reaches the loop in one hop), the workers' answers, lock changes.
        self.queue: Inbox = inbox if inbox is not None else queue.SimpleQueue()
        self.ingest = ingest
        self.wake: float | None = None
        self.inflight: set[tuple[str, str]] = set()
        self.follows: dict[str, _Follow] = {}
        self.reconcile_again: a.Reconcile | None = None
        self.health_seq = 0  # the latest gate-health or ticket publication (what starts wait for)
        self.steps = 0
        self._watchdog_at = 0.0
        o = self.options
        self._act = ThreadPoolExecutor(o.act_workers, thread_name_prefix="api-act")
        self._look = ThreadPoolExecutor(o.look_workers, thread_name_prefix="api-look")
        self._probe = ThreadPoolExecutor(max(1, len(probes)), thread_name_prefix="probe")

    # -- input -----------------------------------------------------------------------------------
    def put(self, item: Item) -> None:
        """Hand an event to the loop (any thread)."""
        self.queue.put(item)

    def feed(self, event: Event) -> None:
        """Step one event now and carry out its actions (loop thread only)."""
        now = self.wall()
        if isinstance(event, Tick):
            self.wake = None
        before = self.state
        self.state, actions = step(self.state, event, now)
        self.steps += 1
        self.metrics.on_step(before, self.state, event)
        broker = event.broker if isinstance(event, BusConnected) and event.broker else None
        persist = False
        for action in actions:
            if isinstance(action, a.Persist):
                persist = True
            else:
                self._do(action, broker, now)
        if persist:
            self.persister.submit(self.state)

    def _handle(self, item: Item) -> None:
        if isinstance(item, BusMessage | LinkUp):
            event = self.ingest(item) if self.ingest is not None else None
            if event is not None:
                self.feed(event)
            return
        if not isinstance(item, Finished):
            self.feed(item)
            return
        self.inflight.discard(item.key)
        if item.task is not None:
            self._task_polled(item.key[1], item.task)
        elif item.key[0] == "task":
            self._poll_failed(item.key[1])
        for ev in item.events:
            self.feed(ev)
        if item.key == ("reconcile", "") and self.reconcile_again is not None:
            again, self.reconcile_again = self.reconcile_again, None
            self._reconcile(again)

    def run_once(self, max_wait: float) -> None:
        """Wait for the next item (or a due timer) and handle everything that is ready."""
        wait = max_wait
        if self.wake is not None:
            wait = min(wait, self.wake - self.wall())
        mono = self.mono()
        if self.follows:
            wait = min(wait, min(f.due for f in self.follows.values()) - mono)
        wait = min(wait, self._watchdog_at - mono)
        try:
            item = self.queue.get(timeout=max(0.0, wait))
        except queue.Empty:
            item = None
        if item is not None:
            self._handle(item)
            for _ in range(1000):  # drain what is ready, without starving the timers for long
                try:
                    self._handle(self.queue.get_nowait())
                except queue.Empty:
                    break
        self._timers()

    def _timers(self) -> None:
        if self.wake is not None and self.wall() >= self.wake:
            self.feed(Tick())
        mono = self.mono()
        for f in list(self.follows.values()):
            if f.due <= mono and ("task", f.upid) not in self.inflight:
                self._poll(f)
        if mono >= self._watchdog_at:
            self.notifier.watchdog()
            self._watchdog_at = mono + self.options.watchdog_s

    # -- actions ---------------------------------------------------------------------------------
    def _do(self, action: a.Action, broker: str | None, now: float) -> None:  # noqa: PLR0912 - one branch per action
        if isinstance(action, a.Publish):
            seq = self.publisher.send(
                topic_for(self.topics, action.message),
                action.message.to_json(),
                retain=action.retain,
                broker=broker,
            )
            if isinstance(action.message, m.GateHealth | m.Ticket):
                self.health_seq = seq
        elif isinstance(action, a.ClearRetained):
            self.publisher.send(
                cleared_topic(self.topics, action.kind, action.key), b"", retain=True, broker=broker
            )
        elif isinstance(action, a.Wake):
            self.wake = action.at if self.wake is None else min(self.wake, action.at)
        elif isinstance(action, a.ProbeGate):
            self._probe_gate(action.gate)
        elif isinstance(action, a.StartGuest):
            self._start(action)
        elif isinstance(action, a.SetHaState):
            self._set_ha(action)
        elif isinstance(action, a.FollowTask):
            mono = self.mono()
            self.follows[action.upid] = _Follow(
                action.vmid, action.node, action.upid, mono, mono + self.options.poll_min_s
            )
        elif isinstance(action, a.ObserveGuest):
            self._observe(action, now)
        elif isinstance(action, a.Reconcile):
            self._reconcile(action)
        elif isinstance(action, a.Notify):
            if action.status:
                self.notifier.status(action.status)
            if action.ready:
                self.notifier.ready()
            if action.stopping:
                self.notifier.stopping()
        elif isinstance(action, a.Log):
            log.log(_LEVELS.get(action.level, logging.INFO), "%s", action.message)

    def _submit(self, pool: ThreadPoolExecutor, key: tuple[str, str], job: Callable[[], Finished]) -> None:
        self.inflight.add(key)

        def run() -> None:
            try:
                done = job()
            except Exception:  # a worker must always answer, or the key stays in flight forever
                log.exception("worker job %s failed", key)
                done = Finished(key)
            self.queue.put(done)

        pool.submit(run)

    def _probe_gate(self, gate: str) -> None:
        prober = self.probes.get(gate)
        key = ("probe", gate)
        if prober is None or key in self.inflight:
            return

        def job() -> Finished:
            try:
                return Finished(key, (prober.probe(),))
            except Exception as exc:  # noqa: BLE001 - a probe that breaks is a failed probe
                return Finished(key, (ProbeResult(gate, False, detail=f"probe error: {exc}"),))

        self._submit(self._probe, key, job)

    def _barrier(self, seq: int) -> None:
        """Wait until the gate health or ticket a start depends on reached every broker (bounded)."""
        if seq and not self.publisher.wait(seq, self.options.publish_wait_s):
            log.warning("gate health/ticket not acknowledged by every broker in time; going on")

    def _start(self, action: a.StartGuest) -> None:
        key = ("start", str(action.vmid))
        barrier = self.health_seq

        def job() -> Finished:
            self._barrier(barrier)
            self.metrics.release_issued("start")
            try:
                upid = self.pve.start(action.node, action.type, action.vmid)
            except ProxmoxError as exc:
                self.metrics.api_error("start", exc.status)
                running = "already running" in str(exc)
                return Finished(
                    key,
                    (StartResult(action.vmid, error=str(exc), status=exc.status, already_running=running),),
                )
            return Finished(key, (StartResult(action.vmid, upid=upid),))

        self._submit(self._act, key, job)

    def _set_ha(self, action: a.SetHaState) -> None:
        key = ("ha", f"{action.vmid}:{action.state}")
        barrier = self.health_seq

        def job() -> Finished:
            self._barrier(barrier)
            if action.state == "started":
                self.metrics.release_issued("ha")
            try:
                self.pve.set_ha_state(action.type, action.vmid, action.state)
            except ProxmoxError as exc:
                self.metrics.api_error("ha", exc.status)
                return Finished(key, (HaStateResult(action.vmid, action.state, False, str(exc), exc.status),))
            return Finished(key, (HaStateResult(action.vmid, action.state, True),))

        self._submit(self._act, key, job)

    def _poll(self, f: _Follow) -> None:
        key = ("task", f.upid)

        def job() -> Finished:
            try:
                return Finished(key, task=self.pve.task_status(f.node, f.upid))
            except ProxmoxError as exc:
                self.metrics.api_error("task", exc.status)
                log.info("task %s: status not readable (%s); trying again", f.upid, exc)
                return Finished(key)

        f.due = float("inf")  # until the poll answers
        self._submit(self._act, key, job)

    def _poll_failed(self, upid: str) -> None:
        # The task runs on whatever the API said; ask again, backing off while the API keeps failing
        # (a follow left unscheduled would hold its node's start slot until release_timeout_s).
        f = self.follows.get(upid)
        if f is None:
            return
        f.errors += 1
        o = self.options
        f.due = self.mono() + min(o.poll_max_s, o.poll_min_s * 2**f.errors)

    def _task_polled(self, upid: str, status: TaskStatus) -> None:
        f = self.follows.get(upid)
        if f is None:
            return
        f.errors = 0
        mono = self.mono()
        if not status.running:
            del self.follows[upid]
            self.feed(TaskResult(f.vmid, f.upid, status.ok, status.exitstatus))
            return
        if mono - f.since > self.options.follow_max_s:
            log.warning("task %s still runs after %.0fs; no longer followed", upid, mono - f.since)
            del self.follows[upid]
            return
        age = mono - f.since
        f.due = mono + min(self.options.poll_max_s, max(self.options.poll_min_s, age * 0.1))

    def _observe(self, action: a.ObserveGuest, now: float) -> None:
        key = ("observe", str(action.vmid))
        if key in self.inflight:
            return

        def job() -> Finished:
            try:
                return Finished(key, (self.pve.observe(action.node, action.type, action.vmid, now),))
            except ProxmoxError as exc:
                self.metrics.api_error("observe", exc.status)
                log.warning("cannot look at guest %s on %s: %s", action.vmid, action.node, exc)
                return Finished(key)

        self._submit(self._look, key, job)

    def _reconcile(self, action: a.Reconcile) -> None:
        key = ("reconcile", "")
        if key in self.inflight:
            if self.reconcile_again is None or action.nodes is None or self.reconcile_again.nodes is None:
                nodes = None if self.reconcile_again is not None else action.nodes
            else:
                nodes = tuple(sorted(set(self.reconcile_again.nodes) | set(action.nodes)))
            self.reconcile_again = a.Reconcile(action.reason, nodes)
            return
        observed_at = self.wall()

        def job() -> Finished:
            try:
                events = self.pve.reconcile(action.nodes, observed_at, self.wall())
            except ProxmoxError as exc:
                self.metrics.api_error("reconcile", exc.status)
                return Finished(key, (ReconcileDone(ok=False, error=str(exc)),))
            return Finished(key, (*events, ReconcileDone()))

        self._submit(self._look, key, job)

    # -- end -------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the pools (running jobs finish; their answers are dropped)."""
        for pool in (self._act, self._look, self._probe):
            pool.shutdown(wait=False, cancel_futures=True)
