"""The coordinator's Prometheus metrics (prometheus-client, a registry of its own per service).

Held starts by gate, node and state; releases issued and their outcomes; gate health, probe
results and latency; the release reaction time (a gate turned healthy -> the first start issued
after it); leadership, API errors and the bus counters. Gauges that need the whole queue are
refreshed at most once a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from startgate.bus.values import BusCounters
from startgate.core.events import HaStateResult, ProbeResult, StartResult, TaskResult
from startgate.core.model import State

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`, or `:port` for every address) as (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdecimal() or not 0 < int(port) < 65536:
        raise ValueError(f"coordinator.metrics_listen {listen!r}: use host:port")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - ":port" means every address, as asked


class Metrics:
    """Every metric the coordinator exports, and the bookkeeping behind the derived ones."""

    def __init__(self, mono: Callable[[], float] = time.monotonic) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._mono = mono
        self.held = Gauge(
            "startgate_held_starts",
            "Held starts by gate, node and state",
            ["gate", "node", "state"],
            registry=r,
        )
        self.releases = Counter(
            "startgate_releases_total", "Releases issued (start call or HA change)", ["kind"], registry=r
        )
        self.outcomes = Counter(
            "startgate_release_outcomes_total", "Outcomes of release calls and tasks", ["outcome"], registry=r
        )
        self.gate_healthy = Gauge(
            "startgate_gate_healthy", "1 when the gate is healthy", ["gate"], registry=r
        )
        self.probes = Counter(
            "startgate_probes_total", "Gate probes by result", ["gate", "result"], registry=r
        )
        self.probe_latency = Histogram(
            "startgate_probe_latency_seconds",
            "Gate probe latency",
            ["gate"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.reaction = Histogram(
            "startgate_release_reaction_seconds",
            "From a gate turning healthy to the first start issued after it",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.leader = Gauge("startgate_leader", "1 while this coordinator leads", registry=r)
        self.api_errors = Counter(
            "startgate_api_errors_total",
            "Proxmox API errors by call and status",
            ["call", "status"],
            registry=r,
        )
        self.bus = Gauge(
            "startgate_bus_messages",
            "Bus counters (received, dropped_invalid, duplicates, connects)",
            ["counter"],
            registry=r,
        )
        self._lock = threading.Lock()
        self._healthy_at: float | None = None
        self._refreshed = float("-inf")
        self._held_keys: set[tuple[str, str, str]] = set()
        self.last_reaction_s: float | None = None

    # -- from the loop -----------------------------------------------------------------------------
    def on_step(self, before: State, after: State, event: object) -> None:
        """Derive what one step changed (cheap: no walk over the queue)."""
        if isinstance(event, ProbeResult):
            result = "ok" if event.ok else "fail"
            self.probes.labels(event.gate, result).inc()
            if event.latency_ms is not None:
                self.probe_latency.labels(event.gate).observe(event.latency_ms / 1000)
        elif isinstance(event, StartResult):
            outcome = "already_running" if event.already_running else "task" if event.upid else "api_error"
            self.outcomes.labels(outcome).inc()
        elif isinstance(event, TaskResult):
            self.outcomes.labels("started" if event.ok else "task_failed").inc()
        elif isinstance(event, HaStateResult):
            self.outcomes.labels(f"ha_{event.state}" if event.ok else "ha_error").inc()
        if before.gates is not after.gates:
            for name, g in after.gates.items():
                self.gate_healthy.labels(name).set(1 if g.healthy else 0)
                old = before.gates.get(name)
                if g.healthy and (old is None or not old.healthy):
                    with self._lock:
                        self._healthy_at = self._mono()
        if before.leader != after.leader:
            self.leader.set(1 if after.leader else 0)

    def api_error(self, call: str, status: int) -> None:
        """Count one failed API call."""
        self.api_errors.labels(call, str(status)).inc()

    # -- from the workers ----------------------------------------------------------------------
    def release_issued(self, kind: str) -> None:
        """A start call or HA change is being sent now: count it, and time the first after a gate healed."""
        self.releases.labels(kind).inc()
        with self._lock:
            at, self._healthy_at = self._healthy_at, None
        if at is not None:
            self.last_reaction_s = self._mono() - at
            self.reaction.observe(self.last_reaction_s)

    # -- periodic ------------------------------------------------------------------------------
    def refresh(self, state: State, bus: BusCounters, *, force: bool = False) -> None:
        """Recount the held starts (at most once a second unless forced) and copy the bus counters."""
        now = self._mono()
        if not force and now - self._refreshed < 1.0:
            return
        self._refreshed = now
        tally: Tally[tuple[str, str, str]] = Tally()
        for e in state.held.values():
            for gate in e.gates:
                tally[(gate, e.node, e.state)] += 1
        for key in self._held_keys - set(tally):
            self.held.remove(*key)
        for key, n in tally.items():
            self.held.labels(*key).set(n)
        self._held_keys = set(tally)
        for name in ("received", "dropped_invalid", "duplicates", "connects"):
            self.bus.labels(name).set(getattr(bus, name))

    def serve(self, listen: str) -> Any:
        """Serve /metrics on `listen` (host:port); the server object (shut it down on exit)."""
        host, port = parse_listen(listen)
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        log.info("metrics on http://%s:%d/metrics", host, server.server_port)
        return server


def sample(metrics: Metrics, name: str, labels: Sequence[tuple[str, str]] = ()) -> float | None:
    """One sample's value from the registry (for tests and benches)."""
    return metrics.registry.get_sample_value(name, dict(labels))
