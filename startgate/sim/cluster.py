"""`SimCluster`: a simulated Proxmox VE cluster with LINSTOR controllers, driven by a scenario.

Python API (what tests and the coordinator's tests use)::

    with SimCluster.from_scenario("contrib/scenarios/seed-outage.toml", scale=0.01) as sim:
        sim.api_url            # https://127.0.0.1:<port>/api2/json (http when openssl is missing)
        sim.ca_file            # the self-signed certificate to verify against (None for http)
        sim.token.token_id     # "startgate@pve!coordinator" (VM.Audit, VM.PowerMgmt, Sys.Audit, Sys.Console)
        sim.token.secret       # its secret; sim.token.header is the Authorization value
        sim.audit_token        # "startgate@pve!audit": VM.Audit + Sys.Audit only (403 on start)
        sim.config_dir         # like /etc/pve: nodes/<node>/{qemu-server,lxc}/<vmid>.conf, storage.cfg
        sim.linstor_urls       # {"linstor": ["http://127.a.b.c:3370"]}: one controller per gate
        sim.snippets_dir(node) # where `local:snippets/<file>` resolves on that node
        sim.install_snippet(node, "hook", text)   # an executable file; returns "local:snippets/hook"
        sim.set_hookscript(vmid, volid)           # what `qm set <vmid> --hookscript` does as root
        sim.set_node_env(node, {"K": "v"})        # added to the environment of hooks run on that node
        sim.on_power(fn)        # fn(node, up): called when a node came up / lost power
        sim.boot_all()          # power every node on (each after its boot_s); startall + HA follow
        sim.power_off_all()     # a total power loss
        sim.guest_state(101)    # GuestState(status="running"|"stopped", node, ha_state, ...)
        sim.events              # EventLog of SimEvent records; sim.clock is the scaled clock
        sim.kill_node("pve3")   # power a node off for good
        sim.inject_api_fault(status=503, until_s=60, path="/cluster/")   # 5xx (or delay_s) for a window
        sim.controller_flapping("linstor", from_s=0, until_s=300, period_s=20)
        sim.controller_never_healthy("linstor")
    # leaving the block stops every thread, server and hook process

`startgate.sim.runner.run_outage(sim, ...)` plays a whole outage and checks the invariants.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from startgate.sim import pvefiles
from startgate.sim import scenario as scn
from startgate.sim.acl import AUDIT_PRIVS, COORDINATOR_PRIVS, Acl, ApiError, new_token
from startgate.sim.api import ApiFault, ApiServer
from startgate.sim.build import guest_from_spec, storages_from_specs
from startgate.sim.clock import DEFAULT_SCALE, SimClock
from startgate.sim.events import EventLog
from startgate.sim.guests import GuestOps
from startgate.sim.ha import DEFAULT_MAX_WORKERS, HAManager
from startgate.sim.hooks import HookRunner, SubprocessHookRunner
from startgate.sim.linstor import FlapWindow, LinstorController
from startgate.sim.model import Guest, Node, Storage
from startgate.sim.nodes import NodeBoot
from startgate.sim.storage import StoragePlugins
from startgate.sim.tasks import TaskManager

log = logging.getLogger(__name__)

MONITOR_S = 0.5

PowerListener = Callable[[str, bool], None]


@dataclass(frozen=True)
class GuestState:
    """A guest's state as the sim knows it (the truth the API reports)."""

    vmid: int
    kind: str
    node: str
    status: str  # running | stopped
    ha_state: str | None  # the CRM state, None when not HA-managed
    ha_request: str | None


class SimCluster:
    """The simulated cluster; use as a context manager (see the module docstring)."""

    def __init__(
        self,
        scenario: scn.Scenario,
        scale: float = DEFAULT_SCALE,
        workdir: Path | None = None,
        hook_runner: HookRunner | None = None,
        tls: bool = True,
    ) -> None:
        self.scenario = scenario
        self.clock = SimClock(scale)
        self.events = EventLog(self.clock.elapsed)
        self.lock = threading.RLock()
        self.hook_runner: HookRunner = hook_runner or SubprocessHookRunner()
        self.hook_env: dict[str, str] = {"STARTGATE_SIM_SCALE": repr(scale)}
        self.node_env: dict[str, dict[str, str]] = {}  # per node, added to its hooks' environment
        self._power_listeners: list[PowerListener] = []
        self._workdir_arg = workdir
        self._tmp: str | None = None
        self.root = Path()
        self.tls = tls
        self.nodes = {n.name: Node(n.name, n.boot_s, n.cpus) for n in scenario.nodes}
        self.guests: dict[int, Guest] = {g.vmid: guest_from_spec(g) for g in scenario.guests}
        self.storages: dict[str, Storage] = {}
        self.tasks = TaskManager(self.clock)
        self.storage = StoragePlugins(self)
        self.ops = GuestOps(self)
        self.boot = NodeBoot(self)
        self.ha = HAManager(
            self, scenario.ha_loop_s, scenario.fence_after_s, scenario.max_workers or DEFAULT_MAX_WORKERS
        )
        self.controllers: dict[str, LinstorController] = {}
        self.token = new_token("startgate@pve!coordinator", COORDINATOR_PRIVS)
        self.audit_token = new_token("startgate@pve!audit", AUDIT_PRIVS)
        self.acl = Acl([self.token, self.audit_token])
        self.api = ApiServer(self)
        self._monitor: threading.Thread | None = None
        for gate in scenario.gates:
            self.controllers[gate.name] = LinstorController(
                gate.name,
                gate.vmid,
                clock=self.clock,
                vm_running_for=self._running_for(gate.vmid),
                node_uptimes=self._uptimes,
                boot_s=gate.boot_s,
                satellite_s=gate.satellite_s,
                connect_s=gate.connect_s,
            )

    @classmethod
    def from_scenario(
        cls,
        source: Path | str | scn.Scenario,
        scale: float = DEFAULT_SCALE,
        workdir: Path | None = None,
        hook_runner: HookRunner | None = None,
        tls: bool = True,
    ) -> SimCluster:
        """A cluster for a scenario file (or an already validated Scenario)."""
        scenario = source if isinstance(source, scn.Scenario) else scn.load(source)
        return cls(scenario, scale=scale, workdir=workdir, hook_runner=hook_runner, tls=tls)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> SimCluster:
        """Write the /etc/pve tree, bind the servers, start the HA stack and the monitor."""
        if self._workdir_arg is None:
            self._tmp = tempfile.mkdtemp(prefix="startgate-sim-")
            self.root = Path(self._tmp)
        else:
            self.root = self._workdir_arg
            self.root.mkdir(parents=True, exist_ok=True)
        for ctrl in self.controllers.values():
            ctrl.pick_address()
        self._make_storages()
        for node in self.nodes:
            self.snippets_dir(node).mkdir(parents=True, exist_ok=True)
        pvefiles.atomic_write(
            self.config_dir / "storage.cfg", pvefiles.render_storage_cfg(list(self.storages.values()))
        )
        for g in self.guests.values():
            pvefiles.write_guest(self.config_dir, g)
        self.write_ha_resources()
        self._apply_faults()
        self.api.start(self.root / "tls" if self.tls else None)
        self.ha.start()
        self._monitor = threading.Thread(target=self._monitor_loop, daemon=True, name="sim-monitor")
        self._monitor.start()
        return self

    def close(self) -> None:
        """Stop every thread, server and hook process; remove the temporary directory."""
        self.clock.stop()
        self.hook_runner.kill_all()
        self.api.close()
        for ctrl in self.controllers.values():
            ctrl.close()
        self.tasks.join(timeout=2.0)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> SimCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _make_storages(self) -> None:
        addresses = {name: c.address for name, c in self.controllers.items()}
        self.storages = storages_from_specs(self.scenario.storages, addresses)

    def _apply_faults(self) -> None:
        for f in self.scenario.faults:
            if isinstance(f, scn.NodeNeverReturns):
                self.nodes[f.node].never_returns = True
            elif isinstance(f, scn.ControllerNeverHealthy):
                self.controller_never_healthy(f.gate)
            elif isinstance(f, scn.ControllerFlapping):
                self.controller_flapping(f.gate, f.from_s, f.until_s, f.period_s)
            elif isinstance(f, scn.ApiErrors):
                self.inject_api_fault(f.status, f.from_s, f.until_s, f.path, f.delay_s)

    def _monitor_loop(self) -> None:
        while not self.clock.stopped:
            for ctrl in self.controllers.values():
                for kind, detail in ctrl.tick():
                    if kind == "satellite_online":
                        self.events.add("satellite_online", node=detail, detail=ctrl.gate)
                    elif kind in {"gate_healthy", "gate_unhealthy"}:
                        self.events.add(
                            "gate_healthy" if kind == "gate_healthy" else "gate_unhealthy", detail=detail
                        )
            self.clock.sleep(MONITOR_S)

    # -- endpoints -----------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """The API base URL, ending in /api2/json."""
        return f"{self.api.base_url}/api2/json"

    @property
    def ca_file(self) -> Path | None:
        """The server certificate (self-signed, so it is its own CA); None over plain HTTP."""
        return self.api.cert_file

    @property
    def config_dir(self) -> Path:
        """The simulated /etc/pve."""
        return self.root / "etc-pve"

    @property
    def linstor_urls(self) -> dict[str, list[str]]:
        """Each gate's controller URL(s)."""
        return {name: [c.url] for name, c in self.controllers.items()}

    def snippets_dir(self, node: str) -> Path:
        """Where `local:snippets/` lives on `node`."""
        return pvefiles.node_root(self.root, node) / "var/lib/vz/snippets"

    # -- helpers the engines use -----------------------------------------------------------------

    def _running_for(self, vmid: int) -> Callable[[], float | None]:
        def running_for() -> float | None:
            g = self.guests.get(vmid)
            since = g.running_since if g is not None and g.running else None
            return None if since is None else self.clock.elapsed() - since

        return running_for

    def _uptimes(self) -> dict[str, float | None]:
        return {n: self.node_uptime(n) for n in self.nodes}

    def node_uptime(self, name: str) -> float | None:
        """Simulated seconds `name` has been up, None when it is down."""
        since = self.nodes[name].up_since
        return None if since is None else self.clock.elapsed() - since

    def quorate(self) -> bool:
        """Corosync quorum: more than half the nodes are up (one vote each)."""
        with self.lock:
            return sum(1 for n in self.nodes.values() if n.up) * 2 > len(self.nodes)

    def guest_on(self, vmid: int, node: str) -> Guest:
        """The guest `vmid` if its config is on `node`; ApiError as the API words it otherwise."""
        g = self.guests.get(vmid)
        if g is None or g.node != node:
            sub = "qemu-server" if g is None or g.kind == "qemu" else "lxc"
            raise ApiError(500, f"Configuration file 'nodes/{node}/{sub}/{vmid}.conf' does not exist")
        return g

    def member_gates(self, guest: Guest) -> tuple[str, ...]:
        """The gates `guest` is a member of (its own gate VM excluded), per design.md's rule."""
        out = []
        for gate in self.scenario.gates:
            if gate.vmid == guest.vmid:
                continue
            if (
                guest.storages() & set(gate.storages)
                or set(guest.tags) & set(gate.tags)
                or guest.vmid in gate.vmids
            ):
                out.append(gate.name)
        return tuple(out)

    def unhealthy_gates(self, guest: Guest) -> tuple[str, ...]:
        """The member gates of `guest` whose controller is not healthy right now."""
        return tuple(g for g in self.member_gates(guest) if not self.controllers[g].healthy_now())

    def controller_at(self, host: str) -> LinstorController | None:
        """The controller listening on `host`."""
        return next((c for c in self.controllers.values() if c.address == host), None)

    def move_guest(self, guest: Guest, target: str) -> None:
        """Move a guest's config to another node."""
        with self.lock:
            pvefiles.move_guest(self.config_dir, guest, target)

    def write_guest(self, guest: Guest) -> None:
        """Rewrite a guest's config file."""
        with self.lock:
            pvefiles.write_guest(self.config_dir, guest)

    def write_ha_resources(self) -> None:
        """Rewrite ha/resources.cfg."""
        with self.lock:
            text = pvefiles.render_ha_resources(list(self.guests.values()))
            pvefiles.atomic_write(self.config_dir / "ha" / "resources.cfg", text)

    # -- control -------------------------------------------------------------------------------

    def boot_all(self) -> None:
        """Power every node on; each comes up after its boot_s."""
        for name in self.nodes:
            self.boot.boot(name)

    def power_off_all(self) -> None:
        """A total power loss: every node off, every guest stopped, no hooks."""
        for name in self.nodes:
            self.boot.power_off(name)

    def kill_node(self, name: str) -> None:
        """Power `name` off for good."""
        with self.lock:
            self.nodes[name].never_returns = True
        self.boot.power_off(name)
        self.events.add("fault", node=name, detail="node killed")

    def guest_state(self, vmid: int) -> GuestState:
        """The guest's state right now."""
        with self.lock:
            g = self.guests[vmid]
            ha_state = g.ha.crm_state if g.ha_managed and g.ha else None
            return GuestState(
                vmid,
                g.kind,
                g.node,
                "running" if g.running else "stopped",
                ha_state,
                g.ha.state if g.ha else None,
            )

    def install_snippet(self, node: str, filename: str, text: str, mode: int = 0o755) -> str:
        """Write an (executable) snippet on `node`; return its volume id."""
        path = self.snippets_dir(node) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        os.chmod(path, mode)  # noqa: PTH101 - mode is the point here
        return f"local:snippets/{filename}"

    def set_hookscript(self, vmid: int, volid: str | None) -> None:
        """Set (or remove) a guest's `hookscript:` as root would (`qm set --hookscript`)."""
        with self.lock:
            g = self.guests[vmid]
            g.hookscript = volid
            self.write_guest(g)

    def set_node_env(self, node: str, env: dict[str, str]) -> None:
        """Variables `node` gives the hooks it runs (what its own files would tell a real node's hook)."""
        self.node_env[node] = dict(env)

    def on_power(self, listener: PowerListener) -> None:
        """Call `listener(node, up)` after a node came up (True) or lost its power (False)."""
        self._power_listeners.append(listener)

    def power_changed(self, node: str, up: bool) -> None:
        """Tell the listeners (NodeBoot calls this; outside the cluster lock)."""
        for listener in list(self._power_listeners):
            try:
                listener(node, up)
            except Exception:  # a listener's bug must not stop a node's boot
                log.exception("power listener failed for %s (up=%s)", node, up)

    def inject_api_fault(
        self,
        status: int = 500,
        from_s: float = 0.0,
        until_s: float = 60.0,
        path: str = "",
        delay_s: float = 0.0,
    ) -> None:
        """Answer API calls matching `path` (a regex) with `status` (after `delay_s`) in the window."""
        self.api.faults.append(ApiFault(from_s, until_s, status, delay_s, path))

    def controller_never_healthy(self, gate: str) -> None:
        """The gate's /health stays 500."""
        self.controllers[gate].state.never_healthy = True

    def controller_flapping(self, gate: str, from_s: float, until_s: float, period_s: float) -> None:
        """The gate's /health alternates 500/200 every period_s within the window."""
        self.controllers[gate].state.flaps.append(FlapWindow(from_s, until_s, period_s))
