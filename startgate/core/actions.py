"""What `step` asks the service loop to do: plain data, executed in order.

Each request that has an answer names the event that carries it back (ProbeGate -> ProbeResult,
StartGuest -> StartResult, FollowTask -> TaskResult, SetHaState -> HaStateResult,
ObserveGuest -> GuestObserved, Reconcile -> NodeObserved/GuestObserved/TaskObserved... then
ReconcileDone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from startgate.bus.messages import Message
from startgate.core.model import GuestType


@dataclass(frozen=True, slots=True)
class ProbeGate:
    """Run the gate's health check (and, for linstor, read /v1/nodes); answer with ProbeResult."""

    gate: str


@dataclass(frozen=True, slots=True)
class StartGuest:
    """`POST /nodes/{node}/{type}/{vmid}/status/start`; answer with StartResult."""

    vmid: int
    node: str
    type: GuestType


@dataclass(frozen=True, slots=True)
class FollowTask:
    """Poll a task until it ends; answer with TaskResult."""

    vmid: int
    node: str
    upid: str


@dataclass(frozen=True, slots=True)
class SetHaState:
    """`PUT /cluster/ha/resources/{vm|ct}:{vmid}` with `state`; answer with HaStateResult."""

    vmid: int
    type: GuestType
    state: Literal["disabled", "started"]


@dataclass(frozen=True, slots=True)
class ObserveGuest:
    """Read one guest's live status (status/current, active tasks); answer with GuestObserved."""

    vmid: int
    node: str
    type: GuestType


@dataclass(frozen=True, slots=True)
class Reconcile:
    """Compare with the API (all nodes, or the listed ones); answer with observations, then ReconcileDone."""

    reason: str
    nodes: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish `message` to every broker, on the topic its kind and key name."""

    message: Message
    retain: bool = False


@dataclass(frozen=True, slots=True)
class ClearRetained:
    """Publish an empty retained payload on the topic of `kind` (startgate.bus.topics) and `key`."""

    kind: str
    key: int | str


@dataclass(frozen=True, slots=True)
class Notify:
    """Tell systemd: READY=1 (when `ready`), STATUS=`status`."""

    status: str
    ready: bool = False
    stopping: bool = False


@dataclass(frozen=True, slots=True)
class Persist:
    """The durable part of the state changed: write the state file (the service may coalesce)."""


@dataclass(frozen=True, slots=True)
class Wake:
    """Send a Tick no later than `at` (the service keeps the earliest request)."""

    at: float


@dataclass(frozen=True, slots=True)
class Log:
    """Something worth a log line (the core does no I/O itself)."""

    level: Literal["debug", "info", "warning", "error"]
    message: str


Action = (
    ProbeGate
    | StartGuest
    | FollowTask
    | SetHaState
    | ObserveGuest
    | Reconcile
    | Publish
    | ClearRetained
    | Notify
    | Persist
    | Wake
    | Log
)
