"""Build the core's Settings from the validated configuration (the core never sees pydantic config)."""

from __future__ import annotations

from startgate import __version__
from startgate.config import Config, Gate, HttpCheck, LinstorCheck, TcpCheck
from startgate.core.model import GateSpec, Settings


def _target(gate: Gate) -> str:
    check = gate.check
    if isinstance(check, LinstorCheck):
        return ", ".join(f"{u}/health" for u in check.urls)
    if isinstance(check, HttpCheck):
        return check.url
    if isinstance(check, TcpCheck):
        return f"tcp://{check.host}:{check.port}"
    raise TypeError(f"gate {gate.name}: unknown check kind")


def gate_spec(gate: Gate) -> GateSpec:
    """One gate's settings as the core needs them."""
    check = gate.check
    return GateSpec(
        name=gate.name,
        interval_s=gate.interval_s,
        healthy_after=gate.healthy_after,
        timeout_s=gate.timeout_s,
        on_timeout=gate.on_timeout,
        node_ready=isinstance(check, LinstorCheck) and check.node_ready,
        vmid=gate.vmid,
        target=_target(gate),
    )


def settings_from_config(config: Config, node: str | None = None) -> Settings:
    """The core's settings for this node's coordinator.

    Retained gate health is refreshed at least twice per `hook.health_max_age_s`, so a hook never
    finds it too old to believe while the coordinator runs.
    """
    c = config.coordinator
    return Settings(
        node=node or config.node_name,
        gates=tuple(gate_spec(g) for g in config.gates),
        version=__version__,
        max_parallel_starts=c.max_parallel_starts,
        start_retries=c.start_retries,
        retry_backoff_s=c.retry_backoff_s,
        ticket_ttl_s=c.ticket_ttl_s,
        heartbeat_s=c.heartbeat_s,
        health_refresh_s=min(c.heartbeat_s, config.hook.health_max_age_s / 2),
        reconcile_interval_s=c.reconcile_interval_s,
        release_timeout_s=c.release_timeout_s,
        # A guest whose outcome is awaited is looked at no less often than the cluster is reconciled.
        observe_interval_s=min(c.observe_interval_s, c.reconcile_interval_s),
        ha_stuck_s=c.ha_stuck_s,
    )
