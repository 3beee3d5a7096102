"""startgate's per-node services on a simulated cluster, as child processes that follow their node's power.

On a real node systemd starts `startgate-agent.service` (and `startgate-coordinator.service`) at
boot and a power loss ends them without warning. Here a `NodeServices` is told every power change
(`SimCluster.on_power`): when a node comes up it gets a fresh kernel boot id (the file the agent
reads instead of /proc/sys/kernel/random/boot_id) and its services are spawned; when it loses
power they are SIGKILLed, as a power loss ends them (no shutdown event, no clean disconnect: the
broker fires their Last Will). `stop_all()` at the end of a run is an orderly shutdown: SIGTERM,
a grace period, then SIGKILL.

Each service is `python -m startgate --config <node toml> <command> ...` with STARTGATE_CONFIG and
STARTGATE_CACHE_DIR pointing into the node's own directory tree, exactly like the systemd units
(`Environment=STARTGATE_CONFIG=...`, `ExecStart=startgate <command>`). systemd's own variables
(NOTIFY_SOCKET, WATCHDOG_*) are removed: a demo run under systemd must not notify it.
A service that exits while its node is up is recorded (`Exited`), so the demo can say so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

# The services run niced: their start-up (imports, ~0.4 s of CPU each) would otherwise compete with
# the hooks that run at the same moment of a boot, and the scaled clock magnifies every real delay
# 1/scale times (4 simulated nodes share this machine's cores; real nodes do not).
NICE = 10
_SYSTEMD_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


@dataclass(frozen=True)
class Service:
    """One per-node service: its name and the startgate command line after `--config <toml>`."""

    name: str  # "agent", "coordinator"
    args: tuple[str, ...]  # e.g. ("agent", "--poll", "0.1"); `{boot_id}` is replaced by the file


@dataclass(frozen=True)
class NodeFiles:
    """Where a simulated node keeps what a real one keeps under / (see startgate_side)."""

    node: str
    root: Path

    @property
    def config(self) -> Path:
        """/etc/startgate/startgate.toml."""
        return self.root / "etc/startgate/startgate.toml"

    @property
    def token(self) -> Path:
        """/etc/startgate/token (the coordinator's API token secret, 0600)."""
        return self.root / "etc/startgate/token"

    @property
    def spool(self) -> Path:
        """/var/spool/startgate."""
        return self.root / "var/spool/startgate"

    @property
    def state(self) -> Path:
        """/var/lib/startgate."""
        return self.root / "var/lib/startgate"

    @property
    def cache(self) -> Path:
        """/var/cache/startgate (the hook's validated config cache; $STARTGATE_CACHE_DIR)."""
        return self.root / "var/cache/startgate"

    @property
    def units(self) -> Path:
        """/etc/systemd/system."""
        return self.root / "etc/systemd/system"

    @property
    def boot_id(self) -> Path:
        """/proc/sys/kernel/random/boot_id."""
        return self.root / "proc/sys/kernel/random/boot_id"

    @property
    def logs(self) -> Path:
        """Where the services' output goes (journald on a real node)."""
        return self.root / "var/log/startgate"

    def env(self) -> dict[str, str]:
        """What tells startgate's processes on this node where their files are."""
        # Journald stamps each line on a real node; these logs are plain files, so startgate does.
        return {
            "STARTGATE_CONFIG": str(self.config),
            "STARTGATE_CACHE_DIR": str(self.cache),
            "STARTGATE_LOG_TIMES": "1",
        }

    def new_boot(self) -> str:
        """Write a fresh boot id (the node just powered on) and return it."""
        boot = str(uuid.uuid4())
        self.boot_id.parent.mkdir(parents=True, exist_ok=True)
        self.boot_id.write_text(boot + "\n", encoding="ascii")
        return boot


@dataclass(frozen=True)
class Exited:
    """A service that ended while its node was up (it crashed, or refused its config)."""

    node: str
    service: str
    code: int
    log: Path


class _Running:
    def __init__(self, proc: subprocess.Popen[bytes], out: IO[bytes], log_path: Path) -> None:
        self.proc = proc
        self.out = out
        self.log_path = log_path


class NodeServices:
    """Spawns and ends each node's services as its power changes (see the module docstring)."""

    def __init__(
        self, files: dict[str, NodeFiles], services: list[Service], stop_grace_s: float = 3.0
    ) -> None:
        self.files = files
        self.services = list(services)
        self.stop_grace_s = stop_grace_s
        self._lock = threading.Lock()
        self._running: dict[tuple[str, str], _Running] = {}
        self._closed = False
        self.exited: list[Exited] = []
        self.spawned = 0
        self.killed = 0

    def env(self, node: str) -> dict[str, str]:
        """The environment a service on `node` runs with."""
        env = {k: v for k, v in os.environ.items() if k not in _SYSTEMD_VARS}
        return env | self.files[node].env()

    def argv(self, node: str, service: Service) -> list[str]:
        """`python -m startgate --config <toml> <command> ...` for `service` on `node`."""
        files = self.files[node]
        args = [a.replace("{boot_id}", str(files.boot_id)) for a in service.args]
        return [sys.executable, "-m", "startgate", "--config", str(files.config), *args]

    def on_power(self, node: str, up: bool) -> None:
        """The node came up (spawn its services) or lost power (SIGKILL them)."""
        if node not in self.files:
            return
        if up:
            self._boot(node)
        else:
            self._end(node, signal.SIGKILL, grace=5.0)

    def _boot(self, node: str) -> None:
        files = self.files[node]
        files.new_boot()
        with self._lock:
            if self._closed:
                return
            self._reap_exited()
            for service in self.services:
                if (node, service.name) not in self._running:
                    self._running[(node, service.name)] = self._spawn(node, service)
                    self.spawned += 1

    def _spawn(self, node: str, service: Service) -> _Running:
        files = self.files[node]
        files.logs.mkdir(parents=True, exist_ok=True)
        log_path = files.logs / f"{service.name}.log"
        out = log_path.open("ab")
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and package, fixed arguments
            self.argv(node, service),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=self.env(node),
            start_new_session=True,  # a Ctrl-C in the terminal reaches the demo, which stops these itself
        )
        with contextlib.suppress(OSError):  # see NICE
            os.setpriority(os.PRIO_PROCESS, proc.pid, NICE)
        log.info("%s: started %s (pid %d)", node, service.name, proc.pid)
        return _Running(proc, out, log_path)

    def _reap_exited(self) -> None:
        """Record services that ended on their own while their node was up (lock held)."""
        for key, run in list(self._running.items()):
            code = run.proc.poll()
            if code is not None:
                self.exited.append(Exited(key[0], key[1], code, run.log_path))
                run.out.close()
                del self._running[key]

    def _end(self, node: str | None, sig: signal.Signals, grace: float) -> None:
        with self._lock:
            self._reap_exited()
            keys = [k for k in self._running if node is None or k[0] == node]
            runs = [self._running.pop(k) for k in keys]
        for run in runs:
            with contextlib.suppress(ProcessLookupError):
                run.proc.send_signal(sig)
        deadline = time.monotonic() + grace
        for run in runs:
            try:
                run.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s ignored %s for %.1f s; killing it", run.log_path.stem, sig.name, grace)
                run.proc.kill()
                run.proc.wait()
            run.out.close()
        if sig == signal.SIGKILL:
            self.killed += len(runs)

    def kill(self, node: str, service: str) -> bool:
        """SIGKILL one service as a fault (not recorded as a service that exited on its own)."""
        with self._lock:
            run = self._running.pop((node, service), None)
        if run is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            run.proc.kill()
        run.proc.wait()
        run.out.close()
        self.killed += 1
        return True

    def respawn(self, node: str, service: str) -> bool:
        """Start `service` on `node` again after it died (systemd's `Restart=on-failure`; same boot id)."""
        with self._lock:
            if self._closed:
                return False
            self._reap_exited()
            spec = next((s for s in self.services if s.name == service), None)
            if spec is None or (node, service) in self._running:
                return False
            self._running[(node, service)] = self._spawn(node, spec)
            self.spawned += 1
            return True

    def running(self, node: str, service: str) -> int | None:
        """The pid of `service` on `node` while it runs, else None."""
        with self._lock:
            run = self._running.get((node, service))
            return run.proc.pid if run is not None and run.proc.poll() is None else None

    def stop_all(self) -> None:
        """An orderly shutdown of every service (SIGTERM, then SIGKILL after the grace period)."""
        with self._lock:
            self._closed = True
        self._end(None, signal.SIGTERM, self.stop_grace_s)
