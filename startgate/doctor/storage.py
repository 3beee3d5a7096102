"""Doctor's storage checks: storage.cfg against the gates, the linstor-proxmox plugin, `controllervm`.

- Each storage a gate lists exists in `<config_dir>/storage.cfg`; for a LINSTOR gate it is of
  type `drbd` (the linstor-proxmox plugin's type), and its `controller` list (default
  `localhost`, a comma list tried in order) names the same hosts as the gate's urls.
- A `controllervm` option has had no effect since linstor-proxmox 6.0.0 (LINBIT/linstor-proxmox
  CHANGELOG 6.0.0, commit 76d33d7 "rm controllervm setting"); pve-storage then skips the key
  with a warning (pve-common SectionConfig `parse_config`: a key without a schema fails
  `check_value` inside an eval, and only that key is dropped).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from startgate.config import Config, Gate
from startgate.doctor.pvefiles import Package, SectionFile, at_least, parse_sections
from startgate.doctor.result import Finding, fail, ok, warn

PLUGIN = "linstor-proxmox"
CONTROLLERVM_REMOVED = "6.0.0"


def read_storage_cfg(config_dir: Path) -> SectionFile | Finding:
    """storage.cfg parsed, or the failing finding when it cannot be read."""
    path = config_dir / "storage.cfg"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return fail(
            "storage.cfg",
            f"cannot read {path}: {exc.strerror}",
            "run doctor on a Proxmox node (pmxcfs mounted)",
        )
    return parse_sections(text, str(path))


def _hosts(gate: Gate) -> list[str]:
    if gate.check.kind != "linstor":
        return []
    return [urlsplit(u).hostname or "" for u in gate.check.urls]


def gate_storages(cfg: Config, storages: SectionFile) -> list[Finding]:
    """Each gated storage exists, is `drbd` for a LINSTOR gate, and its controllers match the urls."""
    out: list[Finding] = []
    for gi, gate in enumerate(cfg.gates):
        for storage in gate.storages:
            name = f"storage {storage}"
            section = storages.find(storage)
            if section is None:
                out.append(
                    fail(
                        name,
                        f"gate {gate.name} lists storage {storage!r}, which storage.cfg does not define",
                        f"fix gates[{gi}].storages in the startgate config (see `pvesm status`)",
                    )
                )
                continue
            if gate.check.kind != "linstor":
                out.append(ok(name, f"storage {storage} ({section.type}) exists"))
                continue
            if section.type != "drbd":
                out.append(
                    warn(
                        name,
                        f"storage {storage} is of type {section.type!r}, not drbd (LINSTOR): "
                        f"its guests do not depend on gate {gate.name}'s controller",
                        f"remove {storage!r} from gates[{gi}].storages, or point it at the LINSTOR storage",
                    )
                )
                continue
            out.append(_controllers(gi, gate, storage, section.get("controller", "localhost")))
    return out


def _controllers(gi: int, gate: Gate, storage: str, controller: str) -> Finding:
    name = f"storage {storage}"
    theirs = [c.strip() for c in controller.split(",") if c.strip()]
    ours = _hosts(gate)
    if set(theirs) == set(ours):
        return ok(
            name, f"storage {storage} (drbd) uses controllers {','.join(theirs)}, as gate {gate.name} probes"
        )
    urls = ", ".join(f'"http://{h}:3370"' for h in theirs)
    return warn(
        name,
        f"storage {storage}'s controller list ({','.join(theirs)}) differs from gate {gate.name}'s urls "
        f"({','.join(ours)}): the gate may call the controller healthy while the plugin cannot reach it",
        f"set gates[{gi}].check.urls = [{urls}] (or fix `controller` in storage.cfg)",
    )


def plugin(packages: dict[str, Package], storages: SectionFile) -> list[Finding]:
    """The linstor-proxmox version, and any `controllervm` line it ignores."""
    drbd = [s for s in storages.sections if s.type == "drbd"]
    if not drbd:
        return []
    pkg = packages.get(PLUGIN)
    out: list[Finding] = []
    if pkg is None:
        out.append(
            warn(
                "linstor-proxmox",
                f"package {PLUGIN} is not installed on this node, but storage.cfg has drbd storages",
                f"apt install {PLUGIN} (LINBIT's repository) on every node",
            )
        )
    else:
        out.append(ok("linstor-proxmox", f"{PLUGIN} {pkg.version} installed"))
    for s in drbd:
        if "controllervm" not in s.options:
            continue
        vm = s.get("controllervm")
        if pkg is not None and not at_least(pkg.version, CONTROLLERVM_REMOVED):
            out.append(ok(f"storage {s.id}", f"controllervm {vm} is in effect with {PLUGIN} {pkg.version}"))
            continue
        installed = f"installed: {pkg.version}" if pkg else "plugin version unknown"
        out.append(
            warn(
                f"storage {s.id}",
                f"`controllervm {vm}` in storage {s.id} has had no effect since {PLUGIN} 6.0 ({installed}); "
                "pve-storage ignores it with a parse warning",
                f"delete the `controllervm {vm}` line of storage {s.id} from /etc/pve/storage.cfg",
            )
        )
    return out
