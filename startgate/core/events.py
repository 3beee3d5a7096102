"""What `step` reacts to: plain data produced by the service loop and its adapters.

Bus messages arrive as the decoded models of startgate.bus.messages (GuestEvent, HeldStart,
NodeEvent, NodeStatus, Command, Ticket, Cleared, ...), used as events directly. The types below
are the rest: service life cycle, probe results, Proxmox API observations and call results.
"""

from __future__ import annotations

from dataclasses import dataclass

from startgate.bus.messages import (
    Cleared,
    Command,
    CoordinatorStatus,
    GateHealth,
    GuestEvent,
    HeldStart,
    NodeEvent,
    NodeStatus,
    Reply,
    Ticket,
)
from startgate.core.model import GuestStatus, GuestType

# -- service life cycle -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Started:
    """The service is connected and has restored its state: systemd may be told READY=1."""


@dataclass(frozen=True, slots=True)
class Tick:
    """A timer fired (the service sends one at or after every `Wake.at`)."""


@dataclass(frozen=True, slots=True)
class Shutdown:
    """SIGTERM: stop acting, say so, persist."""


@dataclass(frozen=True, slots=True)
class LockAcquired:
    """This process now holds the cluster lock: it leads."""


@dataclass(frozen=True, slots=True)
class LockLost:
    """This process no longer holds the cluster lock: it follows."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class BusConnected:
    """A broker (re)connected; its retained state may be stale or gone, so republish."""

    broker: str = ""


@dataclass(frozen=True, slots=True)
class BadCommand:
    """A payload on `cmd/<verb>` that did not validate; answered with an error reply."""

    request_id: str
    error: str


# -- probes -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one `ProbeGate`.

    `nodes_online` (linstor gates): satellites ONLINE in /v1/nodes, controller-type nodes left out;
    None when the nodes query itself failed (then no node counts as ready).
    """

    gate: str
    ok: bool
    latency_ms: float | None = None
    detail: str = ""
    target: str = ""
    nodes_online: frozenset[str] | None = None


# -- Proxmox API observations -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeObserved:
    """A node as the API shows it: `boot_time` from its uptime, `startall_done` once its startall ended."""

    node: str
    online: bool
    boot_time: float | None = None
    startall_done: bool = True


@dataclass(frozen=True, slots=True)
class GuestObserved:
    """A guest as the API shows it, with its gate membership already worked out by the service.

    `starting`: an active start task (qmstart/vzstart/hastart) exists for it. `last_ran`: the end
    of its latest successful start or of any stop/shutdown task, if the task list shows one.
    """

    vmid: int
    node: str
    type: GuestType
    status: GuestStatus
    gates: tuple[str, ...] = ()
    onboot: bool = False
    order: int | None = None
    up: float | None = None
    ha_managed: bool = False
    ha_state: str | None = None
    lock: str | None = None
    name: str | None = None
    last_ran: float | None = None
    starting: bool = False
    observed_at: float | None = None  # when the API was read (default: when the event is stepped)


@dataclass(frozen=True, slots=True)
class GuestMissing:
    """An observed guest no longer exists (deleted): its held start cannot happen."""

    vmid: int


@dataclass(frozen=True, slots=True)
class TaskObserved:
    """A finished start task from a node's task list (`GET /nodes/{node}/tasks?errors=1`)."""

    node: str
    upid: str
    vmid: int
    type: str  # qmstart, vzstart, ...
    endtime: float
    ok: bool
    exitstatus: str = ""


@dataclass(frozen=True, slots=True)
class ReconcileDone:
    """A `Reconcile` pass ended (all its observations were sent before this)."""

    ok: bool = True
    error: str = ""


# -- results of the core's own requests ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartResult:
    """The answer to `StartGuest`: a UPID or an error (`status` 0: no answer; the start may have happened)."""

    vmid: int
    upid: str | None = None
    error: str = ""
    status: int = 0
    already_running: bool = False


@dataclass(frozen=True, slots=True)
class TaskResult:
    """A followed task ended (`FollowTask`)."""

    vmid: int
    upid: str
    ok: bool
    exitstatus: str = ""


@dataclass(frozen=True, slots=True)
class HaStateResult:
    """The answer to `SetHaState`."""

    vmid: int
    state: str
    ok: bool
    error: str = ""
    status: int = 0


BusEvent = (
    GuestEvent
    | HeldStart
    | NodeEvent
    | NodeStatus
    | Command
    | Ticket
    | Cleared
    | GateHealth
    | CoordinatorStatus
    | Reply
)
Event = (
    BusEvent
    | Started
    | Tick
    | Shutdown
    | LockAcquired
    | LockLost
    | BusConnected
    | BadCommand
    | ProbeResult
    | NodeObserved
    | GuestObserved
    | GuestMissing
    | TaskObserved
    | ReconcileDone
    | StartResult
    | TaskResult
    | HaStateResult
)
