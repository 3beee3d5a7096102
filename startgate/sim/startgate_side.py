"""The seam between the simulated cluster and the real startgate processes.

`StartgateSide` deploys startgate onto a started `SimCluster` the way an admin would on a real one:
- a broker: the configured one (`bus.brokers`), else its own `mosquitto` child on a free port;
- per node, a startgate.toml (validated with `startgate.config`) pointing at the sim's API, its
  token (secret file mode 0600), its config_dir and the gates' controller URLs; times in it are
  REAL seconds, because the hook, agent and coordinator run in real time next to the scaled sim;
- per node, the hook snippet in that node's snippets dir, and `hookscript:` on every member guest;
- per node, the node agent and the coordinator as child processes, started when the node comes up
  and killed when it goes down; the broker is stopped for `broker_down` fault windows.
The parts are Python modules run with `python -m`; `missing()` names those not built yet, and the
runner then says so and runs the outage without startgate instead of pretending.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from startgate import config as sg_config
from startgate.sim import scenario as scn
from startgate.sim.broker import MosquittoChild
from startgate.sim.cluster import SimCluster

log = logging.getLogger(__name__)

HOOK_FILE = "startgate-hook"


@dataclass(frozen=True)
class Parts:
    """The modules that make up startgate's runtime side (each run as `python -m <module>`)."""

    hook: str = "startgate.hooks.hookscript"
    agent: str = "startgate.hooks.agent"
    coordinator: str = "startgate.coordinator.service"


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


class StartgateSide:
    """Deploys and runs startgate on a simulated cluster (see the module docstring)."""

    def __init__(self, parts: Parts | None = None, broker_url: str | None = None) -> None:
        self.parts = parts or Parts()
        self._broker_url = broker_url
        self._broker: MosquittoChild | None = None
        self._procs: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self._sim: SimCluster | None = None
        self._thread: threading.Thread | None = None

    def missing(self) -> list[str]:
        """The parts whose module does not exist yet, as `role (module)`."""
        wanted = [("hookscript", self.parts.hook), ("node agent", self.parts.agent)]
        wanted.append(("coordinator", self.parts.coordinator))
        return [f"{role} ({mod})" for role, mod in wanted if not _module_exists(mod)]

    @property
    def broker_url(self) -> str:
        """The broker in use (after `start`)."""
        if self._broker_url:
            return self._broker_url
        return self._broker.url if self._broker else ""

    def start(self, sim: SimCluster) -> None:
        """Broker, configs, snippets and hookscripts now; processes follow their nodes' power."""
        self._sim = sim
        if self._broker_url is None:
            self._broker = MosquittoChild(sim.root / "broker")
            self._broker.start()
        (sim.root / "secrets").mkdir(mode=0o700, exist_ok=True)
        secret = sim.root / "secrets" / "token"
        secret.write_text(sim.token.secret + "\n", encoding="utf-8")
        secret.chmod(0o600)
        for node in sim.nodes:
            path = self.config_path(sim, node)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(scn.dump_toml(self.node_config(sim, node, secret)), encoding="utf-8")
            sg_config.load(path)  # what we wrote must be a valid startgate config
            sim.install_snippet(node, HOOK_FILE, self.hook_snippet(path))
        members = [g.vmid for g in sim.guests.values() if sim.member_gates(g)]
        for vmid in members:
            sim.set_hookscript(vmid, f"local:snippets/{HOOK_FILE}")
        self._thread = threading.Thread(target=self._follow_power, daemon=True, name="startgate-side")
        self._thread.start()

    def config_path(self, sim: SimCluster, node: str) -> Path:
        """Where `node`'s startgate.toml lives."""
        return sim.root / "node-roots" / node / "etc/startgate/startgate.toml"

    def node_config(self, sim: SimCluster, node: str, secret: Path) -> dict[str, object]:
        """`node`'s startgate.toml as data (real-time values, see the module docstring)."""
        node_root = sim.root / "node-roots" / node
        gates = [
            {
                "name": gate.name, "vmid": gate.vmid,
                "check": {"kind": "linstor", "urls": sim.linstor_urls[gate.name], "timeout_s": 0.5},
                "storages": gate.storages, "tags": gate.tags, "vmids": gate.vmids,
                "interval_s": 0.2, "healthy_after": 3,
            }
            for gate in sim.scenario.gates
        ]  # fmt: skip
        return {
            "cluster": sim.scenario.cluster,
            "node": node,
            "bus": {"brokers": [self.broker_url], "connect_timeout_s": 1.0, "keepalive_s": 5},
            "proxmox": {
                "url": sim.api.base_url,
                "token_id": sim.token.token_id,
                "token_secret_file": str(secret),
                "verify_tls": str(sim.ca_file) if sim.ca_file else False,
                "config_dir": str(sim.config_dir),
                "timeout_s": 5.0,
            },
            "gates": gates,
            "hook": {
                "max_seconds": 2.0,
                "spool_dir": str(node_root / "var/spool/startgate"),
                "health_max_age_s": 2.0,
                "snippet": str(sim.snippets_dir(node) / HOOK_FILE),
                "volid": f"local:snippets/{HOOK_FILE}",
            },
            "coordinator": {
                "state_dir": str(node_root / "var/lib/startgate"),
                "lock_dir": str(sim.config_dir / "priv/lock/startgate"),
                "lock_timeout_s": 5.0,
                "reconcile_interval_s": 1.0,
                "retry_backoff_s": 0.5,
                "heartbeat_s": 1.0,
            },
        }

    def hook_snippet(self, config: Path) -> str:
        """The executable snippet Proxmox runs: this Python, the hook module, this node's config."""
        return (
            "#!/bin/sh\n"
            "# startgate hookscript (simulated node): <vmid> <phase>\n"
            f"STARTGATE_CONFIG='{config}' exec '{sys.executable}' -m {self.parts.hook} \"$@\"\n"
        )

    def _follow_power(self) -> None:
        sim = self._sim
        if sim is None:
            return
        faults = [f for f in sim.scenario.faults if isinstance(f, scn.BrokerDown)]
        while not sim.clock.stopped:
            with sim.lock:
                up = {n: node.up for n, node in sim.nodes.items()}
            for node, is_up in up.items():
                for role, module in (("agent", self.parts.agent), ("coordinator", self.parts.coordinator)):
                    key = (node, role)
                    if is_up and key not in self._procs:
                        self._procs[key] = self._spawn(sim, node, role, module)
                    elif not is_up and key in self._procs:
                        self._procs.pop(key).kill()
            self._broker_faults(sim, faults)
            sim.clock.sleep(0.5)

    def _broker_faults(self, sim: SimCluster, faults: list[scn.BrokerDown]) -> None:
        if self._broker is None or not faults:
            return
        t = sim.clock.elapsed()
        down = any(f.from_s <= t < f.until_s for f in faults)
        if down and self._broker.running:
            self._broker.stop()
            sim.events.add("fault", detail="broker stopped")
        elif not down and not self._broker.running:
            self._broker.start()
            sim.events.add("fault", detail="broker started again")

    def _spawn(self, sim: SimCluster, node: str, role: str, module: str) -> subprocess.Popen[bytes]:
        logs = sim.root / "logs"
        logs.mkdir(exist_ok=True)
        out = (logs / f"{role}-{node}.log").open("ab")
        env = dict(os.environ) | {"STARTGATE_CONFIG": str(self.config_path(sim, node))}
        return subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", module], stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env
        )

    def stop(self) -> None:
        """Kill the processes and the broker child."""
        for p in self._procs.values():
            p.kill()
        for p in self._procs.values():
            p.wait()
        self._procs.clear()
        if self._broker is not None:
            self._broker.stop()
