"""Turning validated scenario records into the sim's runtime records."""

from __future__ import annotations

from startgate.sim import scenario as scn
from startgate.sim.model import Guest, HAResource, Startup, Storage, parse_disk

LOCAL = scn.StorageSpec(
    id="local", type="dir", path="/var/lib/vz", content=["iso", "vztmpl", "backup", "snippets"]
)


def storages_from_specs(
    specs: list[scn.StorageSpec], controller_addresses: dict[str, str]
) -> dict[str, Storage]:
    """storage.cfg entries; `local` (with snippets) is added when the scenario has none."""
    all_specs = list(specs) if any(s.id == "local" for s in specs) else [LOCAL, *specs]
    out = {}
    for s in all_specs:
        ctrls = tuple(controller_addresses[g] for g in s.controller_gates)
        out[s.id] = Storage(
            s.id, s.type, tuple(s.content), s.path, s.shared, ctrls, s.resourcegroup, tuple(s.keep_res)
        )
    return out


def guest_from_spec(spec: scn.GuestSpec) -> Guest:
    """The runtime guest (config and HA resource) a scenario guest describes."""
    volumes = tuple(parse_disk(d, spec.vmid, spec.type, i) for i, d in enumerate(spec.disks))
    ha_spec = spec.ha_spec()
    ha = None
    if ha_spec is not None:
        sid = f"{'vm' if spec.type == 'qemu' else 'ct'}:{spec.vmid}"
        ha = HAResource(sid, ha_spec.state, ha_spec.max_restart, ha_spec.max_relocate)
    return Guest(
        vmid=spec.vmid,
        kind=spec.type,
        name=spec.name or f"{'vm' if spec.type == 'qemu' else 'ct'}{spec.vmid}",
        node=spec.node,
        volumes=volumes,
        onboot=spec.onboot,
        startup=Startup.parse(spec.startup) if spec.startup else Startup(),
        tags=tuple(spec.tags),
        lock=spec.lock,
        ha=ha,
    )
