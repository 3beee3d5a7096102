"""Run every doctor check in order, with the outside world injected (files root, API, bus, systemd)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from startgate import guests as guests_mod
from startgate import inventory
from startgate.doctor import gatevm, hooks, service, storage
from startgate.doctor.pvefiles import Package, SectionFile, installed_packages
from startgate.doctor.result import Finding, fail, warn

if TYPE_CHECKING:
    from startgate.commands._state import ClusterState
    from startgate.config import Config
    from startgate.guests import Guest


@dataclass(frozen=True)
class World:
    """How doctor reaches outside: the node's file root, the API, the bus, systemd."""

    root: Path
    permissions: service.FetchPermissions
    connect: service.Connect
    read_state: Callable[[], ClusterState | None]  # None when no broker answers
    unit_state: service.UnitState


def _packages(root: Path) -> dict[str, Package]:
    try:
        text = (root / "var/lib/dpkg/status").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    return installed_packages(text)


def _ha_resources(config_dir: Path) -> dict[str, str]:
    from startgate.hooks.ha import resource_states  # noqa: PLC0415 - the hook's own reading of the file

    try:
        return resource_states(
            (config_dir / "ha/resources.cfg").read_text(encoding="utf-8", errors="replace")
        )
    except OSError:
        return {}


def run(cfg: Config, world: World) -> list[Finding]:
    """Every check, grouped: guests and hooks, gate VMs, storage, API, bus, units."""
    config_dir = cfg.proxmox.config_dir
    out: list[Finding] = []
    if not inventory.readable(config_dir):
        out.append(
            fail(
                "guests",
                f"cannot list {inventory.nodes_dir(config_dir)}",
                "run doctor on a Proxmox node, or fix proxmox.config_dir",
            )
        )
    rules = guests_mod.rules(cfg.gates)
    guests, problems = guests_mod.load_all(config_dir, rules)
    out.extend(warn("guest config", p, "fix or remove that config file") for p in problems)
    out.extend(hooks.member_hookscripts(cfg, guests))
    out.append(hooks.local_file(cfg, world.root))
    state = world.read_state()
    out.extend(hooks.node_files(inventory.node_names(config_dir), None if state is None else state.nodes))

    storages = storage.read_storage_cfg(config_dir)
    if isinstance(storages, Finding):
        out.append(storages)
        storages = SectionFile(())
    packages = _packages(world.root)
    resources = _ha_resources(config_dir)
    by_vmid: dict[int, Guest] = {g.vmid: g for g in guests}
    for gi, gate in enumerate(cfg.gates):
        vm = by_vmid.get(gate.vmid) if gate.vmid is not None else None
        out.extend(
            gatevm.check(
                gi, gate, vm, resources=resources, storages=storages, packages=packages, root=world.root
            )
        )
    out.extend(storage.gate_storages(cfg, storages))
    out.extend(storage.plugin(packages, storages))

    ha_members = sum(
        1 for g in guests if g.memberships and gatevm.ha_state(resources, g) not in (None, "ignored")
    )
    out.extend(service.token(cfg, world.permissions, ha_guests=ha_members))
    out.extend(service.brokers(cfg, world.connect))
    out.extend(service.units(world.unit_state))
    return out
