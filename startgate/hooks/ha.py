"""Is a guest HA-managed? Read from `<config_dir>/ha/resources.cfg`, as Proxmox itself decides it.

proxmox/pve-ha-manager: src/PVE/HA/Config.pm `vm_is_ha_managed` / `$service_check_ha_state`: a
guest is HA-managed when `vm:<vmid>` or `ct:<vmid>` is a section of resources.cfg whose `state`
is not `ignored` (no state means `started`), unless HA is disarmed in `ignore` mode
(`disarm.mode` in `ha/manager_status`, new in PVE 9). resources.cfg is a SectionConfig file
(src/PVE/HA/Resources.pm `parse_section_header`): a `type: name` header line, then indented
`key value` lines, sections separated by blank lines.
"""

from __future__ import annotations

import json
from pathlib import Path


def resource_states(text: str) -> dict[str, str]:
    """Map each resource id (`vm:101`, `ct:102`) in resources.cfg text to its state."""
    states: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            if not line.strip():
                current = None
            continue
        if not line[0].isspace():
            head, colon, name = line.partition(":")
            if colon and head.strip() and name.strip() and len(name.split()) == 1:
                current = f"{head.strip().lower()}:{name.strip()}"
                states[current] = "started"
            else:
                current = None
            continue
        if current is not None:
            key, _, value = line.strip().partition(" ")
            if key == "state" and value.strip():
                state = value.strip()
                states[current] = "started" if state == "enabled" else state
    return states


def is_managed(vmid: int, resources_text: str, manager_status_text: str | None = None) -> bool:
    """True when Proxmox would treat the guest as HA-managed."""
    states = resource_states(resources_text)
    state = states.get(f"vm:{vmid}") or states.get(f"ct:{vmid}")
    if state is None or state == "ignored":
        return False
    if manager_status_text:
        try:
            status = json.loads(manager_status_text)
        except ValueError:
            return True
        disarm = status.get("disarm") if isinstance(status, dict) else None
        if isinstance(disarm, dict) and disarm.get("mode") == "ignore":
            return False
    return True


def ha_managed(config_dir: str, vmid: int) -> bool:
    """Read the cluster's HA files under `config_dir` (absent files: not HA-managed)."""
    base = Path(config_dir) / "ha"
    try:
        resources = (base / "resources.cfg").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    try:
        status: str | None = (base / "manager_status").read_text(encoding="utf-8", errors="replace")
    except OSError:
        status = None
    return is_managed(vmid, resources, status)
