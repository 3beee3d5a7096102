"""The coordinator's state as small frozen values: settings, gates, nodes, guests, the held queue.

Everything here is plain data (stdlib dataclasses), serialisable by startgate.core.persist. Times
are Unix epoch seconds as passed to `step` as `now`; nothing here reads a clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from startgate.core.pmap import PMap

GuestType = Literal["qemu", "lxc"]
GuestStatus = Literal["running", "stopped", "unknown"]
EntryState = Literal["held", "releasing", "failed"]
Source = Literal["hook", "reconcile", "coordinator"]
OnTimeout = Literal["hold", "start"]
# Where a release in flight stands: waiting for the start call, following its task, or walking
# an HA resource through `disabled` -> `started` and waiting for the LRM to start the guest.
Phase = Literal["", "start", "task", "ha-disable", "ha-start", "ha-wait"]

_INSTANCE = re.compile(r"[A-Za-z0-9_.-]{1,40}")
NO_ORDER = 1 << 62  # guests without `startup: order=` start last (pve-manager: LONG_MAX)

# CRM service states in which the HA stack is already trying to start the guest
# (pve-ha-manager src/PVE/HA/Manager.pm `$valid_service_states`, Tools.pm verbose states).
HA_TRYING = frozenset(
    {
        "started",
        "starting",
        "request_start",
        "request_start_balance",
        "migrate",
        "relocate",
        "recovery",
        "queued",
    }
)
HA_STOPPED = frozenset({"stopped", "disabled", "request_stop"})


@dataclass(frozen=True, slots=True)
class GateSpec:
    """One gate's static settings (from config `[[gates]]`)."""

    name: str
    interval_s: float = 2.0
    healthy_after: int = 3
    timeout_s: float = 0.0
    on_timeout: OnTimeout = "hold"
    node_ready: bool = False  # linstor: a guest's node must show its satellite ONLINE
    vmid: int | None = None
    target: str = ""  # what the probe checks, for display


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `step` needs from the configuration; built once by the service."""

    node: str
    gates: tuple[GateSpec, ...]
    version: str = ""
    max_parallel_starts: int = 4
    start_retries: int = 3
    retry_backoff_s: float = 5.0
    max_backoff_s: float = 300.0
    ticket_ttl_s: float = 60.0
    heartbeat_s: float = 30.0
    health_refresh_s: float = 5.0  # retained gate health stays younger than the hook's health_max_age_s
    reconcile_interval_s: float = 30.0
    release_timeout_s: float = 300.0  # a release still unconfirmed after this counts as failed
    observe_interval_s: float = 2.0  # how often to look at a guest whose outcome is awaited
    max_observe: int = 50  # guest look-ups per interval, at most (after a takeover a reconcile does the bulk)
    ha_stuck_s: float = 120.0  # HA says started but the guest stays stopped this long: stuck
    tombstone_ttl_s: float = 86400.0
    probe_stall_s: float = 30.0  # a probe that never answers counts as failed after this

    def gate(self, name: str) -> GateSpec | None:
        """The gate called `name`, or None."""
        for g in self.gates:
            if g.name == name:
                return g
        return None


@dataclass(frozen=True, slots=True)
class GateState:
    """A gate's health as the probes have seen it (hysteresis: passes in a row)."""

    healthy: bool = False
    passes: int = 0
    since: float = 0.0
    checked_at: float | None = None
    latency_ms: float | None = None
    detail: str = "not checked yet"
    target: str = ""
    nodes_online: frozenset[str] = frozenset()
    probing_since: float | None = None
    next_probe_at: float = 0.0


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What is known about a cluster node."""

    online: bool = True
    boot_time: float | None = None
    boot_id: str = ""
    startall_done: bool = False


@dataclass(frozen=True, slots=True)
class GuestInfo:
    """What is known about a guest from API observations and hook events."""

    vmid: int
    node: str
    type: GuestType
    status: GuestStatus = "unknown"
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
    stuck_since: float | None = None


@dataclass(frozen=True, slots=True)
class HeldEntry:
    """One held start and, while it is being released, where the release stands."""

    vmid: int
    node: str
    type: GuestType
    gates: tuple[str, ...]
    first_held: float
    last_held: float
    attempts: int = 1  # refusals seen (hook) or discoveries (reconcile)
    ha: bool = False
    ha_state: str | None = None
    state: EntryState = "held"
    reason: str = ""
    source: Source = "hook"
    name: str | None = None
    order: int | None = None
    up: float | None = None
    tries: int = 0  # release attempts that failed
    retry_at: float = 0.0
    phase: Phase = ""
    issued_at: float | None = None
    upid: str | None = None
    forced: bool = False  # released despite its gates (command --force or on_timeout=start)
    needs_check: bool = False  # a release may be under way that we did not see end: look first
    check_after: float = 0.0  # only an observation made after this resolves needs_check
    busy_until: float | None = None  # someone else is starting it (hook allow, active task)
    last_error: str = ""
    stuck: bool = False  # HA said started and nothing happened: reset via disabled first


@dataclass(frozen=True, slots=True)
class TicketRec:
    """A one-shot forced release published as retained `ticket/<vmid>`."""

    vmid: int
    expires: float
    requested_by: str = ""
    time: float = 0.0


@dataclass(frozen=True, slots=True)
class Tombstone:
    """When a held entry was cleared, and whether an admin dropped it (then reconcile leaves it alone)."""

    at: float
    dropped: bool = False


@dataclass(frozen=True, slots=True)
class NodePacing:
    """Per-node release pacing: when the next order level may begin (`up=` of the level before)."""

    not_before: float = 0.0


@dataclass(frozen=True, slots=True)
class Timers:
    """When the periodic duties fall due."""

    reconcile_at: float = 0.0
    heartbeat_at: float = 0.0
    health_at: float = 0.0
    observe_at: float = 0.0
    status_dirty: bool = True


@dataclass(frozen=True, slots=True)
class State:
    """The whole coordinator state: the only argument `step` transforms."""

    settings: Settings
    instance: str  # event-id prefix, unique per process (given by the service)
    seq: int = 0
    started: bool = False
    stopping: bool = False
    leader: bool = False
    leader_since: float | None = None
    gates: Mapping[str, GateState] = field(default_factory=dict)
    nodes: Mapping[str, NodeInfo] = field(default_factory=dict)
    guests: PMap[int, GuestInfo] = field(default_factory=PMap)
    held: PMap[int, HeldEntry] = field(default_factory=PMap)
    # Derived from `held` (kept by lifecycle.store): per node, every entry as (order key, vmid) in
    # release order, and the entries with a release in flight. They keep a release pass per node
    # proportional to what it releases, not to the size of the queue.
    order_index: Mapping[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    inflight: Mapping[str, frozenset[int]] = field(default_factory=dict)
    tickets: PMap[int, TicketRec] = field(default_factory=PMap)
    tombstones: PMap[int, Tombstone] = field(default_factory=PMap)
    pacing: Mapping[str, NodePacing] = field(default_factory=dict)
    timers: Timers = Timers()
    status_text: str = ""


def initial_state(settings: Settings, instance: str) -> State:
    """A fresh follower state: no leader, every gate unhealthy until probed.

    `instance` prefixes the event ids this process publishes: unique per process (node + random).
    """
    if not _INSTANCE.fullmatch(instance):
        raise ValueError(f"instance {instance!r}: use 1-40 letters, digits, '_', '.', '-'")
    return State(
        settings=settings,
        instance=instance,
        gates={g.name: GateState(target=g.target) for g in settings.gates},
    )


def order_key(order: int | None) -> int:
    """The sort key of a `startup: order=` value (none sorts last, as in pve-manager)."""
    return NO_ORDER if order is None else order
