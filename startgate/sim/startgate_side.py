"""The seam between the simulated cluster and the real startgate processes.

`StartgateSide.start(sim)` deploys startgate onto a started `SimCluster` the way an admin does on a
real cluster (README, "Installing on the nodes"), with every node's files in its own directory
tree under the sim's temporary root (`NodeFiles`: <root>/node-roots/<node>/...):

- a broker: the configured one (`bus.brokers[0]`), else a `startgate.bus.broker.MosquittoProcess`
  child on a free loopback port, stopped and started again for the scenario's `broker_down` windows;
- per node, /etc/startgate/startgate.toml (validated by `startgate.config`), the API token secret
  /etc/startgate/token (0600), then `startgate.hooks.install.install()` itself: the real snippet in
  the node's snippets dir (shebang: this interpreter, `-IS`), the systemd units, the spool, state and
  cache dirs, the validated config cache the hook's fast path reads;
- per node, the environment the node's hooks and services run with: STARTGATE_CONFIG (the node's
  toml) and STARTGATE_CACHE_DIR (its /var/cache/startgate), standing in for the default paths a
  real node has; nothing of the test machine's /etc or /var is read or written;
- `hookscript: local:snippets/startgate-hook` on every member guest: `startgate attach --all`'s own
  plan (`startgate.guests` + `core.membership` on the guest config files the sim wrote), applied
  with `sim.set_hookscript` where a real node runs `pvesh set ... --hookscript` as root;
- per node, the node agent (`python -m startgate --config <toml> agent`) and, when this build has
  the `startgate coordinator` command, the coordinator (`python -m startgate --config <toml>
  coordinator`), both as child processes that start when the node boots and are SIGKILLed when it
  loses power (`startgate.sim.services`);
- a `BusTap` that records (validated) everything said on the broker, for the demo and the tests.

Coordinator hook point (for the `startgate coordinator` command, detected by asking the CLI itself,
`command_exists("coordinator")`, never by guessing module names). Its per-node config carries:
- `proxmox.url`: the sim's API (`https://127.0.0.1:<port>`, base without /api2/json), `token_id`
  and `token_secret_file` (mode 0600; a token with VM.Audit, VM.PowerMgmt, Sys.Audit, Sys.Console);
- `proxmox.verify_tls`: the path of the sim's self-signed certificate (its own CA). This machine sets
  REQUESTS_CA_BUNDLE, and requests lets that override a Session-level `verify` path
  (psf/requests#3829): the coordinator must pass `verify=` on each request (or build its session
  with `trust_env=False`), or every call fails certificate verification here and on any admin's
  host that sets the variable. The sim does not hide this by cleaning the environment;
- `proxmox.config_dir`: the sim's /etc/pve, and `coordinator.lock_dir` = <config_dir>/priv/lock/
  startgate, one directory shared by all simulated nodes as pmxcfs shares /etc/pve/priv/lock;
- every interval in REAL seconds (`Timing`): the services run in real time next to the scaled sim
  clock (0.01 real s per simulated s by default), so a 2 s gate interval would be 200 simulated s.
  `lock_timeout_s` is small so a standby takes over from a dead leader within the run.
Two clocks meet here: the services stamp bus messages with REAL wall time (time.time()), while the
sim's API reports SIMULATED UNIX times (UPID start times, task lists: `sim.clock.now()`, which
runs 1/scale times faster). A coordinator must not compare the two (e.g. "this task started
after that held record"); API times with API times, bus times with its own clock.
`Timing` holds the values; `coordinator_config()` is where a new coordinator key goes, and
`coordinator_args` the command line after `startgate --config <toml>` (default `coordinator`; the
node's STARTGATE_CONFIG is set as well, like the systemd unit). A coordinator process that exits
while its node is up is reported by `problems()` and printed by the demo, never hidden.

On a configured broker (not the sim's own) the topic prefix is one of the run's own
(`startgate-sim/<id>`), so a demo never writes held records into a real cluster's topics.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from startgate import config as sg_config
from startgate import guests
from startgate.bus.broker import MosquittoProcess
from startgate.bus.topics import Topics
from startgate.commands.attach import plan_attach
from startgate.errors import SimError
from startgate.hooks import install as hook_install
from startgate.sim import scenario as scn
from startgate.sim.bustap import BusRecord, BusTap
from startgate.sim.cluster import SimCluster
from startgate.sim.pvefiles import node_root
from startgate.sim.services import NodeFiles, NodeServices, Service

log = logging.getLogger(__name__)

HOOK_FILE = "startgate-hook"
HOOK_VOLID = f"local:snippets/{HOOK_FILE}"
TOPIC_PREFIX = "startgate"


@dataclass(frozen=True)
class Timing:
    """Bounds and intervals for the real processes, in REAL seconds (see the module docstring)."""

    hook_max_seconds: float = 3.0  # the product's default: a busy machine needs it (see the report)
    health_max_age_s: float = 1.0
    check_timeout_s: float = 0.5
    gate_interval_s: float = 0.1
    healthy_after: int = 3
    connect_timeout_s: float = 1.0
    keepalive_s: int = 5  # the config's minimum
    # The product's 1 s .. 30 s backoff is 33 s .. 1000 s simulated at scale 0.03: longer than
    # whole rounds. Scaled down with the rest, a restarted broker is found again as promptly.
    reconnect_min_s: float = 0.05
    reconnect_max_s: float = 0.5
    agent_poll_s: float = 0.1
    lock_timeout_s: float = 1.5
    heartbeat_s: float = 0.3
    reconcile_interval_s: float = 0.5
    retry_backoff_s: float = 0.2
    ticket_ttl_s: float = 10.0
    observe_interval_s: float = 0.3
    release_timeout_s: float = 30.0
    ha_stuck_s: float = 10.0
    api_timeout_s: float = 5.0
    # Longer than an API call may take, as the coordinator unit's TimeoutStopSec (20 s) is longer
    # than the product's API timeout (10 s): a coordinator stopping mid-call ends the call, then exits.
    stop_grace_s: float = 6.0


def command_exists(name: str) -> bool:
    """True when `startgate <name>` is a command of this build (asks the CLI, not a module guess)."""
    import typer.core  # noqa: PLC0415 - only the demo asks
    import typer.main  # noqa: PLC0415

    from startgate.cli import app  # noqa: PLC0415 - the CLI imports the sim lazily; no cycle at import

    group = typer.main.get_command(app)
    return isinstance(group, typer.core.TyperGroup) and name in group.commands


class StartgateSide:
    """Deploys and runs startgate on a simulated cluster (see the module docstring)."""

    def __init__(
        self,
        broker_url: str | None = None,
        *,
        coordinator: bool | None = None,
        timing: Timing | None = None,
        topic_prefix: str | None = None,
        has_command: Callable[[str], bool] = command_exists,
        coordinator_args: tuple[str, ...] = ("coordinator",),
        broker_autosave_s: int | None = None,
    ) -> None:
        """`coordinator`: None runs it when this build has it, False never (hook and agent only).

        `broker_autosave_s`: our own broker keeps its retained messages on disk, saved every so
        many real seconds, as contrib/mosquitto/startgate.conf does (None: in memory only, so a
        broker that is killed comes back empty).

        `topic_prefix`: default "startgate" on the sim's own broker; on a configured broker a prefix
        of its own per run ("startgate-sim/<id>"), so a demo never writes into a real cluster's topics.
        """
        self._broker_url = broker_url
        self._want_coordinator = coordinator
        self._has_command = has_command
        self.coordinator_args = coordinator_args  # after `startgate --config <toml>`
        self._autosave_s = broker_autosave_s
        self.timing = timing or Timing()
        if topic_prefix is None:
            topic_prefix = TOPIC_PREFIX if broker_url is None else f"startgate-sim/{uuid.uuid4().hex[:8]}"
        self.topic_prefix = topic_prefix
        self._broker: MosquittoProcess | None = None
        self._tap: BusTap | None = None
        self._sim: SimCluster | None = None
        self._faults: threading.Thread | None = None
        self._stopping = threading.Event()  # ends the broker-fault thread before the broker is stopped
        self.files: dict[str, NodeFiles] = {}
        self.services: NodeServices | None = None
        self.members: dict[int, tuple[str, ...]] = {}
        self.notes: list[str] = []

    # -- what runs -----------------------------------------------------------------------------
    @property
    def coordinator_available(self) -> bool:
        """True when this build has the `startgate coordinator` command."""
        return self._has_command("coordinator")

    @property
    def runs_coordinator(self) -> bool:
        """True when the coordinator will run (available and not turned off)."""
        return self._want_coordinator is not False and self.coordinator_available

    def missing(self) -> list[str]:
        """Why the coordinator does not run ([] when it does); the hook and the agent always run."""
        if self._want_coordinator is False:
            return ["turned off for this run"]
        if not self.coordinator_available:
            return ["this build has no `startgate coordinator` command"]
        return []

    def service_list(self) -> list[Service]:
        """The per-node services, as their command lines after `startgate --config <toml>`."""
        t = self.timing
        out = [Service("agent", ("agent", "--boot-id-file", "{boot_id}", "--poll", f"{t.agent_poll_s:g}"))]
        if self.runs_coordinator:
            out.append(Service("coordinator", self.coordinator_args))
        return out

    @property
    def broker_url(self) -> str:
        """The broker in use (after `start`)."""
        if self._broker_url:
            return self._broker_url
        return self._broker.url if self._broker else ""

    # -- deploy --------------------------------------------------------------------------------
    def start(self, sim: SimCluster) -> None:
        """Broker, per-node files and install, hookscripts; the services then follow node power."""
        self._sim = sim
        if self._broker_url is None:
            self._broker = MosquittoProcess(
                sim.root / "broker",
                persistence=self._autosave_s is not None,
                autosave_interval_s=self._autosave_s or 60,
            )
            self._broker.start()
        elif any(isinstance(f, scn.BrokerDown) for f in sim.scenario.faults):
            self.notes.append("broker_down faults ignored: the broker is the configured one, not ours")
        # pmxcfs always has /etc/pve/priv/lock; the coordinators mkdir their lock_dir inside it.
        (sim.config_dir / "priv/lock").mkdir(mode=0o700, parents=True, exist_ok=True)
        configs = {node: self._deploy_node(sim, node) for node in sim.nodes}
        self.members = self.attach(sim, next(iter(configs.values())))
        self._tap = BusTap(self.broker_url, Topics(self.topic_prefix, sim.scenario.cluster)).start()
        self.services = NodeServices(self.files, self.service_list(), self.timing.stop_grace_s)
        sim.on_power(self.services.on_power)
        if self._broker is not None and any(isinstance(f, scn.BrokerDown) for f in sim.scenario.faults):
            self._faults = threading.Thread(target=self._broker_faults, daemon=True, name="sim-broker-faults")
            self._faults.start()

    def _deploy_node(self, sim: SimCluster, node: str) -> sg_config.Config:
        files = NodeFiles(node, node_root(sim.root, node))
        self.files[node] = files
        files.config.parent.mkdir(parents=True, exist_ok=True)
        files.token.write_text(sim.token.secret + "\n", encoding="utf-8")
        files.token.chmod(0o600)
        files.config.write_text(scn.dump_toml(self.node_config(sim, files)), encoding="utf-8")
        config = sg_config.load(files.config)  # what we wrote must be a valid startgate config
        env = files.env()
        steps = hook_install.install(config, files.config, env, units_dir=files.units)
        errors = [s.line() for s in steps if s.action == "error"]
        if errors:
            raise SimError(f"startgate install failed on simulated node {node}: " + "; ".join(errors))
        self.notes += [f"install on {node}: {s.line()}" for s in steps if s.action == "warning"]
        sim.set_node_env(node, env)
        return config

    def attach(self, sim: SimCluster, config: sg_config.Config) -> dict[int, tuple[str, ...]]:
        """`startgate attach --all`'s plan, applied as root would (pvesh); the members and their gates."""
        found, problems = guests.load_all(sim.config_dir, guests.rules(config.gates))
        if problems:
            raise SimError("cannot read simulated guest configs: " + "; ".join(problems))
        members = [g for g in found if g.memberships]
        for change in plan_attach(config, members, replace=False):
            if change.action == "refused":
                raise SimError(f"attach refused for {change.guest.label}: {change.detail}")
            if change.action == "set":
                sim.set_hookscript(change.guest.vmid, change.after)
        return {g.vmid: g.gates for g in sorted(members, key=lambda g: g.vmid)}

    def node_config(self, sim: SimCluster, files: NodeFiles) -> dict[str, object]:
        """`files.node`'s startgate.toml as data (REAL seconds; see the module docstring)."""
        t = self.timing
        gates = [
            {
                "name": gate.name, "vmid": gate.vmid,
                "check": {"kind": "linstor", "urls": sim.linstor_urls[gate.name],
                          "timeout_s": t.check_timeout_s},
                "storages": gate.storages, "tags": gate.tags, "vmids": gate.vmids,
                "interval_s": t.gate_interval_s, "healthy_after": t.healthy_after,
            }
            for gate in sim.scenario.gates
        ]  # fmt: skip
        return {
            "cluster": sim.scenario.cluster,
            "node": files.node,
            "bus": {
                "brokers": [self.broker_url],
                "topic_prefix": self.topic_prefix,
                "connect_timeout_s": t.connect_timeout_s,
                "keepalive_s": t.keepalive_s,
                "reconnect_min_s": t.reconnect_min_s,
                "reconnect_max_s": t.reconnect_max_s,
            },
            "proxmox": {
                "url": sim.api.base_url,
                "token_id": sim.token.token_id,
                "token_secret_file": str(files.token),
                "verify_tls": str(sim.ca_file) if sim.ca_file else False,
                "config_dir": str(sim.config_dir),
                "timeout_s": t.api_timeout_s,
            },
            "gates": gates,
            "hook": {
                "max_seconds": t.hook_max_seconds,
                "spool_dir": str(files.spool),
                "health_max_age_s": t.health_max_age_s,
                "snippet": str(sim.snippets_dir(files.node) / HOOK_FILE),
                "volid": HOOK_VOLID,
            },
            "coordinator": self.coordinator_config(sim, files),
        }

    def coordinator_config(self, sim: SimCluster, files: NodeFiles) -> dict[str, object]:
        """The `[coordinator]` table: per-node state, the lock dir all nodes share, fast real timings."""
        t = self.timing
        return {
            "state_dir": str(files.state),
            "lock_dir": str(sim.config_dir / "priv/lock/startgate"),
            "lock_timeout_s": t.lock_timeout_s,
            "reconcile_interval_s": t.reconcile_interval_s,
            "retry_backoff_s": t.retry_backoff_s,
            "heartbeat_s": t.heartbeat_s,
            "ticket_ttl_s": t.ticket_ttl_s,
            "observe_interval_s": t.observe_interval_s,
            "release_timeout_s": t.release_timeout_s,
            "ha_stuck_s": t.ha_stuck_s,
            # `startup: up=` values are simulated seconds; the coordinator waits in real ones.
            "startup_up_scale": min(1.0, sim.clock.scale),
        }

    # -- while it runs -------------------------------------------------------------------------
    def _broker_faults(self) -> None:
        sim, broker = self._sim, self._broker
        if sim is None or broker is None:
            return
        windows = [f for f in sim.scenario.faults if isinstance(f, scn.BrokerDown)]
        poll = sim.clock.real(max(0.5, sim.clock.sim(0.02)))  # real seconds, at least 20 ms
        while not self._stopping.wait(poll) and not sim.clock.stopped:
            t = sim.clock.elapsed()
            down = any(f.from_s <= t < f.until_s for f in windows)
            if down and broker.running:
                broker.kill()
                sim.events.add("fault", detail="broker down")
            elif not down and not broker.running:
                broker.start()
                sim.events.add("fault", detail="broker back")

    def bus(self) -> BusRecord:
        """What reached the broker so far, validated."""
        return self._tap.record() if self._tap is not None else BusRecord()

    def stop(self) -> None:
        """Stop the services (SIGTERM, grace, SIGKILL), the tap and the broker child."""
        self._stopping.set()
        if self._faults is not None:
            self._faults.join(5.0)  # it must not start the broker again after we stop it
        if self.services is not None:
            self.services.stop_all()
        if self._tap is not None:
            self._tap.stop()
        if self._broker is not None:
            self._broker.stop()

    def problems(self) -> list[str]:
        """Services that ended on their own while their node was up (the demo says so)."""
        if self.services is None:
            return []
        return [
            f"{e.service} on {e.node} exited with {e.code} while its node was up; see {e.log}"
            for e in self.services.exited
        ]
