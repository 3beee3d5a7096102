"""Helpers for running real coordinators next to a simulated cluster (tests and benches only).

- `sim_config(sim, ...)`: a node's startgate Config pointing at the sim's API, token, controllers
  and a broker, with fast REAL-second timings (the sim's clock is scaled; the service is not).
- `Running`: a Coordinator on a thread, stopped like SIGTERM stops it (`stop()`)
  (SIGKILL is tested with real processes).
- `FakeNotifier`: records what systemd would have been told.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from startgate import config as sg_config
from startgate.coordinator.service import Coordinator, ServiceOptions
from startgate.core.model import State
from startgate.sim.cluster import SimCluster


def write_token(sim: SimCluster, directory: Path, token: Any = None) -> Path:
    """The API token secret in a 0600 file (the coordinator refuses a readable one)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "token"
    path.write_text((token or sim.token).secret + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def sim_config(
    sim: SimCluster,
    *,
    node: str,
    brokers: list[str],
    topic_prefix: str,
    root: Path,
    token: Any = None,
    **coordinator: Any,
) -> sg_config.Config:
    """A coordinator config for `node` of `sim` (state under `root/<node>`, a lock dir shared by all)."""
    secret = write_token(
        sim, root / "secrets" / (token.token_id.split("!")[1] if token else "coordinator"), token
    )
    gates = [
        {
            "name": g.name,
            "vmid": g.vmid,
            "check": {"kind": "linstor", "urls": sim.linstor_urls[g.name], "timeout_s": 0.5},
            "storages": g.storages,
            "tags": g.tags,
            "vmids": g.vmids,
            "interval_s": 0.1,
            "healthy_after": 3,
        }
        for g in sim.scenario.gates
    ]
    coord = {
        "state_dir": str(root / node / "state"),
        "lock_dir": str(root / "lock" / "startgate"),
        "lock_timeout_s": 1.5,
        "reconcile_interval_s": 0.5,
        "retry_backoff_s": 0.2,
        "heartbeat_s": 0.5,
        "observe_interval_s": 0.3,
        "ticket_ttl_s": 10.0,
        "release_timeout_s": 20.0,
        "ha_stuck_s": 10.0,
        "startup_up_scale": sim.clock.scale,
    } | coordinator
    data: dict[str, Any] = {
        "cluster": sim.scenario.cluster,
        "node": node,
        "bus": {"brokers": brokers, "topic_prefix": topic_prefix, "connect_timeout_s": 1.0, "keepalive_s": 5},
        "proxmox": {
            "url": sim.api.base_url,
            "token_id": (token or sim.token).token_id,
            "token_secret_file": str(secret),
            "verify_tls": str(sim.ca_file) if sim.ca_file else False,
            "config_dir": str(sim.config_dir),
            "timeout_s": 2.0,
        },
        "gates": gates,
        "hook": {"health_max_age_s": 1.0, "spool_dir": str(root / node / "spool")},
        "coordinator": coord,
    }
    return sg_config.from_dict(data, f"<sim config of {node}>")


class FakeNotifier:
    """Records READY/STATUS/WATCHDOG/STOPPING instead of telling systemd."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def ready(self) -> None:
        """READY=1."""
        self.events.append("READY=1")

    def status(self, text: str) -> None:
        """STATUS=."""
        self.events.append("STATUS=" + text)

    def watchdog(self) -> None:
        """WATCHDOG=1."""
        self.events.append("WATCHDOG=1")

    def stopping(self) -> None:
        """STOPPING=1."""
        self.events.append("STOPPING=1")


class FakePublisher:
    """A publisher that accepts everything at once and records the topics it was given."""

    def __init__(self) -> None:
        self.topics: list[str] = []

    def send(
        self,
        topic: str,
        payload: bytes,  # noqa: ARG002 - the Publisher protocol's signature; only the topic is kept
        *,
        retain: bool,  # noqa: ARG002 - as above
        broker: str | None = None,  # noqa: ARG002 - as above
    ) -> int:
        """Record `topic`; the sequence number is the count so far."""
        self.topics.append(topic)
        return len(self.topics)

    def wait(self, seq: int, timeout: float) -> bool:  # noqa: ARG002 - the Publisher protocol's signature
        """Everything is acknowledged already."""
        return True


class FakePersister:
    """A persister that keeps the last state it was given, in memory."""

    def __init__(self) -> None:
        self.state: State | None = None

    def submit(self, state: State) -> None:
        """Keep `state`."""
        self.state = state


class Running:
    """A coordinator running on a thread (a context manager that stops it cleanly)."""

    def __init__(self, cfg: sg_config.Config, options: ServiceOptions | None = None, **kwargs: Any) -> None:
        self.notifier = FakeNotifier()
        kwargs.setdefault("notifier", self.notifier)
        self.service = Coordinator(cfg, options=options or ServiceOptions(connect_wait_s=3.0), **kwargs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"coordinator-{cfg.node}", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.service.run(self._stop)
        except BaseException as exc:  # noqa: BLE001 - reported to the test through `error`
            self.error = exc

    def start(self) -> Running:
        """Start the thread."""
        self._thread.start()
        return self

    @property
    def leader(self) -> bool:
        """True while the core says it leads."""
        return self.service.loop.state.leader

    def stop(self, timeout: float = 10.0) -> None:
        """Stop as SIGTERM does (clean shutdown)."""
        self._stop.set()
        self._thread.join(timeout)

    def __enter__(self) -> Running:
        return self.start()

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()
