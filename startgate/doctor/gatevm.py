"""Doctor's checks of a gate's own VM (the LINSTOR controller VM): can it start without its gate?

- It exists, and Proxmox HA keeps it started (`vm:<id>` in ha/resources.cfg, state `started`).
- Its disks should not need the controller to start. When they are on LINSTOR (a `drbd`
  storage), the VM can only start if (a) linstor-proxmox >= 8.3.0, which activates a volume
  from its local DRBD device when no controller answers (LINBIT/linstor-proxmox 8.3.0,
  LINSTORPlugin.pm `activate_volume`); (b) something brings that DRBD resource up at boot without
  the controller: `drbd.service` (drbd-utils `drbdadm adjust all`) or `drbd@<res>.target`;
  (c) its `.res` file survives the satellite's start: LINSTOR < 1.33 deletes the ones its keep-res
  regex does not keep (`--keep-res`/`-k`, or `LS_KEEP_RES`), 1.33+ keeps known ones (LINBIT/
  linstor-server CHANGELOG 1.33.0 "LS_KEEP_RES is now obsolete").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from startgate.doctor import units
from startgate.doctor.pvefiles import Package, SectionFile, at_least
from startgate.doctor.result import Finding, fail, ok, warn

if TYPE_CHECKING:
    from startgate.config import Gate
    from startgate.guests import Guest

LOCAL_ACTIVATE = "8.3.0"  # linstor-proxmox: activate from the local DRBD device without a controller
KEEPS_KNOWN_RES = "1.33.0"  # linstor-satellite: known .res files survive a restart without LS_KEEP_RES
SATELLITE = "linstor-satellite.service"


def ha_state(resources: dict[str, str], guest: Guest) -> str | None:
    """The guest's requested HA state (`started`, `disabled`, ...) or None when HA does not manage it."""
    prefix = "ct" if guest.file.type == "lxc" else "vm"
    return resources.get(f"{prefix}:{guest.vmid}")


def linstor_volumes(guest: Guest, gate: Gate, storages: SectionFile) -> list[tuple[str, str]]:
    """(config key, LINSTOR resource name) of the guest's volumes on a drbd storage or one the gate lists."""
    drbd = {s.id for s in storages.sections if s.type == "drbd"}
    if gate.check.kind == "linstor":
        drbd |= set(gate.storages)
    return [(v.key, v.volid.split(":", 1)[1]) for v in guest.config.volumes if v.storage in drbd]


def check(
    gi: int,
    gate: Gate,
    vm: Guest | None,
    *,
    resources: dict[str, str],
    storages: SectionFile,
    packages: dict[str, Package],
    root: Path,
) -> list[Finding]:
    """Every check of gate `gate`'s own VM (none when the gate has no `vmid`)."""
    if gate.vmid is None:
        return [ok(f"gate {gate.name} VM", f"gate {gate.name} has no VM of its own (no vmid)")]
    name = f"gate {gate.name} VM"
    if vm is None:
        return [
            fail(
                name,
                f"VM {gate.vmid} (gate {gate.name}'s own VM) has no config on any node",
                f"set gates[{gi}].vmid to the controller VM's VMID",
            )
        ]
    out = [_ha(name, vm, resources)]
    if vm.memberships:
        out.append(
            warn(
                name,
                f"{vm.label} is a member of {', '.join(vm.gates)}: it waits for another gate",
                "make sure those gates do not depend on this one",
            )
        )
    vols = linstor_volumes(vm, gate, storages)
    if not vols:
        where = ", ".join(sorted({v.storage or v.volid for v in vm.config.volumes})) or "no storage"
        out.append(ok(name, f"{vm.label}'s disks are on {where}: it starts without the controller"))
        return out
    shown = ", ".join(f"{k} ({r})" for k, r in vols)
    out.append(
        ok(
            name,
            f"{vm.label}'s disks {shown} are on LINSTOR: it starts only if their DRBD resources come up "
            "without the controller (the next three checks)",
        )
    )
    resources_ = [r for _, r in vols]
    out.append(_plugin(packages, vm))
    out.append(_bring_up(root, resources_))
    out.append(_keep_res(root, packages, resources_))
    return out


def _ha(name: str, vm: Guest, resources: dict[str, str]) -> Finding:
    sid = f"{'ct' if vm.file.type == 'lxc' else 'vm'}:{vm.vmid}"
    state = ha_state(resources, vm)
    if state is None:
        return warn(
            name,
            f"{vm.label} is not HA-managed: after an outage it starts only with its node (onboot)",
            f"ha-manager add {sid} --state started",
        )
    if state != "started":
        return fail(
            name,
            f"{vm.label}'s HA state is {state!r}: HA will not start it",
            f"ha-manager set {sid} --state started",
        )
    return ok(name, f"{vm.label} is HA-managed with state started")


def _plugin(packages: dict[str, Package], vm: Guest) -> Finding:
    pkg = packages.get("linstor-proxmox")
    if pkg is None:
        return warn(
            "linstor-proxmox", "linstor-proxmox is not installed on this node", "apt install linstor-proxmox"
        )
    if at_least(pkg.version, LOCAL_ACTIVATE):
        return ok(
            "linstor-proxmox",
            f"linstor-proxmox {pkg.version} activates local DRBD devices without a controller",
        )
    return fail(
        "linstor-proxmox",
        f"linstor-proxmox {pkg.version} needs the controller to activate {vm.label}'s disks: it cannot start "
        "while the controller is down",
        f"upgrade linstor-proxmox to {LOCAL_ACTIVATE} or newer",
    )


def _bring_up(root: Path, resources: list[str]) -> Finding:
    if units.enabled(root, "drbd.service"):
        return ok("drbd.service", "drbd.service is enabled: it brings DRBD resources up at boot")
    missing = [
        r
        for r in resources
        if not (
            units.enabled(root, f"drbd@{units.systemd_escape(r)}.target")
            or units.enabled(root, f"drbd@{r}.target")
        )
    ]
    if not missing:
        return ok("drbd.service", f"drbd@.target is enabled for {', '.join(resources)}")
    first = units.systemd_escape(missing[0])
    return fail(
        "drbd.service",
        f"nothing brings {', '.join(missing)} up at boot without the controller (drbd.service and "
        f"drbd@{first}.target are not enabled)",
        f"systemctl enable drbd@{first}.target (or drbd.service)",
    )


def _keep_res(root: Path, packages: dict[str, Package], resources: list[str]) -> Finding:
    sat = packages.get("linstor-satellite")
    if sat is not None and at_least(sat.version, KEEPS_KNOWN_RES):
        return ok(
            "keep-res", f"linstor-satellite {sat.version} keeps known .res files (no LS_KEEP_RES needed)"
        )
    settings = units.service_settings(root, SATELLITE)
    if settings is None:
        return warn("keep-res", f"{SATELLITE} is not installed on this node", "apt install linstor-satellite")
    # Resource names are letters, digits, `_` and `-` (no regex syntax); escape anything else.
    regex = "|".join(r if re.fullmatch(r"[\w-]+", r) else re.escape(r) for r in resources)
    fix = f"systemctl edit {SATELLITE}: [Service] Environment=LS_KEEP_RES={regex}"
    found = settings.keep_res()
    if found is None:
        return fail(
            "keep-res",
            f"{SATELLITE} has no --keep-res / LS_KEEP_RES: it deletes {', '.join(resources)}.res at start, "
            "before drbd.service can use it",
            fix,
        )
    pattern, where = found
    try:
        lost = [r for r in resources if not units.keeps(pattern, r)]
    except re.error as exc:
        return fail("keep-res", f"{where} regex {pattern!r} is invalid: {exc}", fix)
    if lost:
        return fail(
            "keep-res", f"{where} regex {pattern!r} does not keep {', '.join(f'{r}.res' for r in lost)}", fix
        )
    return ok("keep-res", f"{where} regex {pattern!r} keeps {', '.join(f'{r}.res' for r in resources)}")
