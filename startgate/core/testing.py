"""A tiny deterministic cluster that drives the pure core, for property tests and benchmarks.

It is a discrete-event simulation (no I/O, no clock): guests, a boot-time startall, a hook that
decides from the health and tickets the coordinator published, an HA stack reduced to its states,
containers that fail in the storage plugin before the hook, and gates whose health follows a
script. It answers every action the core emits and checks the core's promises as it goes (see
`World.violations`). The simulated Proxmox API of startgate.sim is the full-size counterpart.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from startgate.bus.messages import Cleared, GateHealth, GuestEvent, HeldStart, Ticket
from startgate.bus.topics import TopicRef
from startgate.core import persist, promises
from startgate.core.actions import (
    Action,
    ClearRetained,
    FollowTask,
    ObserveGuest,
    ProbeGate,
    Publish,
    Reconcile,
    SetHaState,
    StartGuest,
    Wake,
)
from startgate.core.events import (
    Event,
    GuestObserved,
    HaStateResult,
    LockAcquired,
    NodeObserved,
    ProbeResult,
    ReconcileDone,
    Started,
    StartResult,
    TaskObserved,
    TaskResult,
    Tick,
)
from startgate.core.machine import step
from startgate.core.model import GuestType, Settings, State, initial_state, order_key


@dataclass
class Guest:
    """One simulated guest; it starts once and then runs for the rest of the run."""

    vmid: int
    node: str
    type: GuestType = "qemu"
    gates: tuple[str, ...] = ("linstor",)
    order: int | None = None
    up: float | None = None
    ha: bool = False
    onboot: bool = True
    start_s: float = 1.0  # how long a successful start task takes
    failures: int = 0  # starts that fail (after the hook allowed them) before one succeeds
    api_errors: int = 0  # start calls answered with HTTP 500 (nothing started) first
    lost_answer: bool = False  # the first start call starts the guest, but its answer never arrives
    status: Literal["stopped", "starting", "running"] = "stopped"
    ha_state: str | None = None
    last_ran: float | None = None


@dataclass
class Task:
    """A start task: ends at `end`, ok or not."""

    upid: str
    vmid: int
    node: str
    end: float
    ok: bool
    exitstatus: str


@dataclass
class World:
    """The cluster, the coordinator's core, and the record of what happened."""

    settings: Settings
    guests: dict[int, Guest]
    gate_flips: dict[str, Sequence[float]]  # gate -> times its truth flips (starts unhealthy)
    parallel_startall: bool = False
    restart_at: float | None = None  # the coordinator is killed here and restarts from its state file
    restart_gap_s: float = 5.0
    failover_at: float | None = None  # the leader dies; another node's coordinator rebuilds from the bus
    api_s: float = 0.05
    now: float = 0.0
    state: State = field(init=False)
    queue: list[tuple[float, int, Event | _Boot | _Running]] = field(default_factory=list)
    seq: int = 0
    health: dict[str, bool] = field(default_factory=dict)  # what the coordinator published
    tickets: dict[int, float] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    followed: set[str] = field(default_factory=set)
    failed_tasks: list[Task] = field(default_factory=list)
    wakes: set[float] = field(default_factory=set)
    retained: dict[tuple[str, int | str], HeldStart | Ticket] = field(default_factory=dict)
    starts: Counter[int] = field(default_factory=Counter)
    released_at: dict[int, float] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    steps: int = 0

    def __post_init__(self) -> None:
        self.state = initial_state(self.settings, "world")
        self.nodes = sorted({g.node for g in self.guests.values()})

    # -- the truth ------------------------------------------------------------------------------
    def gate_up(self, gate: str, t: float) -> bool:
        """The gate's real health at `t` (unhealthy until its first flip)."""
        return sum(1 for f in self.gate_flips.get(gate, ()) if f <= t) % 2 == 1

    def healthy_from(self) -> float:
        """From when on every gate stays healthy (inf if some gate ends unhealthy)."""
        last = 0.0
        for gate in (g.name for g in self.settings.gates):
            flips = list(self.gate_flips.get(gate, ()))
            if len(flips) % 2 == 0:
                return float("inf")
            last = max(last, flips[-1])
        return last

    # -- scheduling -----------------------------------------------------------------------------
    def at(self, t: float, ev: Event | _Boot | _Running) -> None:
        """Deliver `ev` to the core at time `t`."""
        self.seq += 1
        heapq.heappush(self.queue, (t, self.seq, ev))

    def boot(self) -> None:
        """All nodes boot at 0: the coordinator starts and leads; startall tries every onboot guest."""
        self.at(0.0, Started())
        self.at(0.0, LockAcquired())
        for node in self.nodes:
            todo = sorted(
                (g for g in self.guests.values() if g.node == node and g.onboot and not g.ha),
                key=lambda g: (order_key(g.order), g.vmid),
            )
            for i, g in enumerate(todo):
                self.at(0.01 if self.parallel_startall else 0.01 + 0.1 * i, _Boot(g.vmid))
        for g in self.guests.values():
            if g.ha:
                g.ha_state = "started"
                self.at(0.5, _Boot(g.vmid))  # the LRM's first try

    def run(self, until: float) -> None:
        """Process events up to `until` (stopping at a busy loop, which is recorded as a violation)."""
        same = 0
        while self.queue and self.queue[0][0] <= until:
            if self.restart_at is not None and self.queue[0][0] >= self.restart_at:
                self._restart(self.restart_at)
                self.restart_at = None
            if self.failover_at is not None and self.queue[0][0] >= self.failover_at:
                self._failover(self.failover_at)
                self.failover_at = None
            t, _, ev = heapq.heappop(self.queue)
            if t > self.now:
                self.now, same = t, 0
            same += 1
            if same > 5000:
                self.violations.append(f"{self.now:.2f}: the core keeps asking for work at the same instant")
                return
            if isinstance(ev, _Boot):
                self._boot_start(ev.vmid)
                continue
            if isinstance(ev, _Running):
                self._running(ev.vmid)
                continue
            if isinstance(ev, Tick):
                self.wakes.discard(t)
            before = self.state
            self.state, actions = step(self.state, ev, self.now)
            self.steps += 1
            self.violations += [
                f"{self.now:.2f}: {p}" for p in promises.check_step(before, self.state, actions, self.now)
            ]
            for vmid in promises.released(actions):
                self.released_at[vmid] = self.now
            for a in actions:
                self._do(a)

    def _restart(self, t: float) -> None:
        """SIGKILL: every answer in flight is lost; the new process restores the persisted state."""
        self.now = max(self.now, t)
        saved = json.loads(json.dumps(persist.to_dict(self.state)))
        self.state = persist.from_dict(saved, self.settings, "world2")
        self.queue = [item for item in self.queue if isinstance(item[2], _Boot | _Running)]
        heapq.heapify(self.queue)
        self.followed.clear()
        self.wakes.clear()
        self.at(t + self.restart_gap_s, Started())
        self.at(t + self.restart_gap_s, LockAcquired())

    def _failover(self, t: float) -> None:
        """The leader's node is gone; a warm follower that only saw the bus takes the lock."""
        self.now = max(self.now, t)
        self.queue = [item for item in self.queue if isinstance(item[2], _Boot | _Running)]
        heapq.heapify(self.queue)
        self.followed.clear()
        self.wakes.clear()
        self.state = initial_state(self.settings, "world3")
        for ev in [Started(), *self.retained.values()]:  # retained messages arrive on subscribe
            self.state, actions = step(self.state, ev, self.now)
            for a in actions:
                self._do(a)
        self.at(t + self.restart_gap_s, LockAcquired())

    # -- the hook and the start paths ----------------------------------------------------------
    def _hook_allows(self, g: Guest) -> bool:
        if self.tickets.get(g.vmid, -1.0) > self.now:
            del self.tickets[g.vmid]
            allowed = True
        else:
            allowed = all(self.health.get(name, False) for name in g.gates)
        if allowed:
            self.at(self.now + self.api_s, self._event(g, "pre-start", "allow"))
        return allowed

    def _event(self, g: Guest, phase: str, decision: str | None = None) -> GuestEvent:
        return GuestEvent(
            time=self.now,
            vmid=g.vmid,
            node=g.node,
            type=g.type,
            phase=phase,
            decision=decision,
            reason="gate unhealthy" if decision == "hold" else "",
            gates=list(g.gates),
            ha=g.ha,
        )

    def _running(self, vmid: int) -> None:
        g = self.guests[vmid]
        g.status = "running"
        g.last_ran = self.now
        self.at(self.now + self.api_s, self._event(g, "post-start"))

    def _refuse(self, g: Guest) -> None:
        self.at(self.now + self.api_s, self._event(g, "pre-start", "hold"))

    def _boot_start(self, vmid: int) -> None:
        g = self.guests[vmid]
        if g.status != "stopped":
            return
        if g.ha:
            self._lrm_start(g)
            return
        self._start_task(g, from_core=False)

    def _start_task(self, g: Guest, *, from_core: bool) -> Task:
        self.seq += 1
        upid = f"UPID:{g.node}:{self.seq:08X}:0:0:{'qmstart' if g.type == 'qemu' else 'vzstart'}:{g.vmid}:x:"
        plugin_down = g.type == "lxc" and not all(self.gate_up(n, self.now) for n in g.gates)
        if plugin_down:  # containers fail in the storage plugin, before the hook
            task = Task(upid, g.vmid, g.node, self.now + 0.2, ok=False, exitstatus="no LINSTOR controller")
        elif not self._hook_allows(g):
            self._refuse(g)
            task = Task(upid, g.vmid, g.node, self.now + 0.1, ok=False, exitstatus="hookscript error")
        else:
            task = self._run_start(g, upid)
        self.tasks[upid] = task
        if not task.ok:
            self.failed_tasks.append(task)
        if from_core and upid in self.followed:
            self.at(task.end, TaskResult(vmid=g.vmid, upid=upid, ok=task.ok, exitstatus=task.exitstatus))
        return task

    def _run_start(self, g: Guest, upid: str | None) -> Task:
        if g.failures > 0:
            g.failures -= 1
            return Task(upid or "", g.vmid, g.node, self.now + 0.3, ok=False, exitstatus="start failed")
        if g.status != "stopped":
            self.violations.append(f"{self.now:.2f}: guest {g.vmid} started while {g.status}")
        g.status = "starting"
        self.starts[g.vmid] += 1
        if self.starts[g.vmid] > 1:
            self.violations.append(f"{self.now:.2f}: guest {g.vmid} started twice")
        end = self.now + g.start_s
        self.at(end, _Running(g.vmid))
        return Task(upid or "", g.vmid, g.node, end, ok=True, exitstatus="OK")

    # -- actions --------------------------------------------------------------------------------
    def _do(self, a: Action) -> None:  # noqa: PLR0912 - one branch per action type, like the core's table
        t = self.now + self.api_s
        if isinstance(a, ProbeGate):
            ok = self.gate_up(a.gate, self.now)
            nodes = frozenset(self.nodes) if ok else None
            self.at(t, ProbeResult(gate=a.gate, ok=ok, latency_ms=1.0, nodes_online=nodes))
        elif isinstance(a, StartGuest):
            g = self.guests[a.vmid]
            if g.ha:
                self.violations.append(f"{self.now:.2f}: API start of HA-managed guest {g.vmid}")
            if g.status != "stopped":
                self.violations.append(f"{self.now:.2f}: start call for guest {g.vmid}, which is {g.status}")
                self.at(
                    t, StartResult(vmid=a.vmid, error="already running", status=500, already_running=True)
                )
                return
            if g.api_errors > 0:
                g.api_errors -= 1
                self.at(t, StartResult(vmid=a.vmid, error="got timeout", status=500))
                return
            task = self._start_task(g, from_core=True)
            if g.lost_answer:
                g.lost_answer = False
                self.at(t + 10.0, StartResult(vmid=a.vmid, error="read timeout"))
                return
            self.at(t, StartResult(vmid=a.vmid, upid=task.upid))
        elif isinstance(a, FollowTask):
            self.followed.add(a.upid)
            task = self.tasks[a.upid]
            if task.end <= self.now:
                self.at(t, TaskResult(vmid=a.vmid, upid=a.upid, ok=task.ok, exitstatus=task.exitstatus))
            else:
                self.at(
                    task.end, TaskResult(vmid=a.vmid, upid=a.upid, ok=task.ok, exitstatus=task.exitstatus)
                )
        elif isinstance(a, SetHaState):
            self._ha(a, t)
        elif isinstance(a, ObserveGuest):
            self.at(t, self._observe(self.guests[a.vmid], t))
        elif isinstance(a, Reconcile):
            self._reconcile(a, t)
        elif isinstance(a, Publish):
            self._publish(a, t)
        elif isinstance(a, ClearRetained):
            if a.kind == "ticket" and isinstance(a.key, int):
                self.tickets.pop(a.key, None)
            self.retained.pop((a.kind, a.key), None)
            self.at(t, Cleared(ref=TopicRef(a.kind, a.key)))  # our own clear comes back
        elif isinstance(a, Wake):
            when = max(a.at, self.now)
            if when not in self.wakes:
                self.wakes.add(when)
                self.at(when, Tick())

    def _publish(self, a: Publish, t: float) -> None:
        msg = a.message
        if isinstance(msg, GateHealth):
            self.health[msg.gate] = msg.healthy
        elif isinstance(msg, Ticket):
            self.tickets[msg.vmid] = msg.expires
        if isinstance(msg, HeldStart | Ticket):
            if a.retain:
                self.retained[("held" if isinstance(msg, HeldStart) else "ticket", msg.vmid)] = msg
            self.at(t, msg)  # every publication comes back to the subscribed coordinator

    def _ha(self, a: SetHaState, t: float) -> None:
        g = self.guests[a.vmid]
        if not g.ha:
            self.violations.append(f"{self.now:.2f}: HA change for guest {g.vmid}, which is not HA-managed")
        if a.state == "disabled":
            g.ha_state = "disabled"
            self.at(t, HaStateResult(vmid=a.vmid, state="disabled", ok=True))
            return
        if g.ha_state == "error":  # pve-ha-manager API2/HA/Resources.pm check_service_state
            self.at(
                t, HaStateResult(vmid=a.vmid, state="started", ok=False, error="in error state", status=500)
            )
            return
        g.ha_state = "started"
        self.at(t, HaStateResult(vmid=a.vmid, state="started", ok=True))
        if g.status == "stopped":
            self._lrm_start(g)

    def _lrm_start(self, g: Guest) -> None:
        # The LRM's restart -> relocate -> error cycle is folded into one step (pve-ha-manager LRM.pm).
        if not self._hook_allows(g):
            self._refuse(g)
            g.ha_state = "error"
        elif not self._run_start(g, None).ok:
            g.ha_state = "error"

    def _observe(self, g: Guest, t: float) -> GuestObserved:
        return GuestObserved(
            vmid=g.vmid,
            node=g.node,
            type=g.type,
            status="running" if g.status == "running" else "stopped",
            gates=g.gates,
            onboot=g.onboot,
            order=g.order,
            up=g.up,
            ha_managed=g.ha,
            ha_state=g.ha_state,
            last_ran=g.last_ran,
            starting=g.status == "starting",
            observed_at=t,
        )

    def _reconcile(self, a: Reconcile, t: float) -> None:
        nodes = a.nodes or tuple(self.nodes)
        for node in nodes:
            self.at(t, NodeObserved(node=node, online=True, boot_time=0.0, startall_done=self.now > 5.0))
        for g in self.guests.values():
            if g.node in nodes:
                self.at(t, self._observe(g, t))
        for task in self.failed_tasks:
            if task.node in nodes and task.end <= self.now:
                ev = TaskObserved(
                    node=task.node,
                    upid=task.upid,
                    vmid=task.vmid,
                    type="vzstart" if self.guests[task.vmid].type == "lxc" else "qmstart",
                    endtime=task.end,
                    ok=False,
                    exitstatus=task.exitstatus,
                )
                self.at(t, ev)
        self.at(t, ReconcileDone())

    # -- the core's promises --------------------------------------------------------------------
    def finish_check(self) -> list[str]:
        """Liveness: once every gate stays healthy, every guest ends running and nothing is held."""
        problems = list(self.violations)
        stopped = sorted(v for v, g in self.guests.items() if g.status != "running")
        if stopped:
            problems.append(f"not running at the end: {stopped}; held: {dict(self.state.held.items())}")
        return problems


@dataclass(frozen=True)
class _Boot:
    vmid: int


@dataclass(frozen=True)
class _Running:
    vmid: int
