"""The simulated /etc/pve: guest configs, storage.cfg and ha/resources.cfg in their real formats.

Layout as pmxcfs has it (proxmox/pve-cluster `cfs_config_path`): `nodes/<node>/qemu-server/<vmid>.conf`
and `nodes/<node>/lxc/<vmid>.conf`. Files are replaced atomically, so a hookscript reading them
never sees half a file. Each node also gets a private root (`node-roots/<node>/`) standing in for
its local filesystem: `local` storage paths such as /var/lib/vz resolve below it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from startgate.sim.model import Guest, Storage


def guest_conf_path(config_dir: Path, node: str, guest: Guest) -> Path:
    """Where pmxcfs keeps this guest's config on `node`."""
    sub = "qemu-server" if guest.kind == "qemu" else "lxc"
    return config_dir / "nodes" / node / sub / f"{guest.vmid}.conf"


def render_guest_conf(guest: Guest) -> str:
    """The guest config text, keys as qemu-server / pve-container write them (sorted, `key: value`)."""
    conf: dict[str, str] = {}
    if guest.kind == "qemu":
        conf |= {
            "boot": f"order={guest.volumes[0].key};net0",
            "cores": "2",
            "memory": str(guest.memory),
            "name": guest.name,
            "net0": f"virtio=BC:24:11:{guest.vmid % 256:02X}:{guest.vmid // 256 % 256:02X}:01,bridge=vmbr0",
            "ostype": "l26",
            "scsihw": "virtio-scsi-single",
            "smbios1": f"uuid=00000000-0000-4000-8000-{guest.vmid:012d}",
        }
    else:
        conf |= {
            "arch": "amd64",
            "cores": "1",
            "hostname": guest.name,
            "memory": str(guest.memory),
            "net0": f"name=eth0,bridge=vmbr0,hwaddr=BC:24:11:{guest.vmid % 256:02X}:00:02,ip=dhcp,type=veth",
            "ostype": "debian",
            "unprivileged": "1",
        }
    for v in guest.volumes:
        conf[v.key] = v.render()
    if guest.onboot:
        conf["onboot"] = "1"
    if guest.startup.render():
        conf["startup"] = guest.startup.render()
    if guest.tags:
        conf["tags"] = ";".join(guest.tags)
    if guest.hookscript:
        conf["hookscript"] = guest.hookscript
    if guest.lock:
        conf["lock"] = guest.lock
    return "".join(f"{k}: {conf[k]}\n" for k in sorted(conf))


def digest(text: str) -> str:
    """The config digest the API reports (SHA-1 of the raw file, as the config parsers compute it)."""
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def atomic_write(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_guest(config_dir: Path, guest: Guest) -> Path:
    """Write the guest's config under its current node; return the path."""
    path = guest_conf_path(config_dir, guest.node, guest)
    atomic_write(path, render_guest_conf(guest))
    return path


def move_guest(config_dir: Path, guest: Guest, target: str) -> None:
    """Move the guest's config to `target` (what an offline migration or HA relocation does)."""
    old = guest_conf_path(config_dir, guest.node, guest)
    guest.node = target
    write_guest(config_dir, guest)
    old.unlink(missing_ok=True)


def render_storage_cfg(storages: list[Storage]) -> str:
    """storage.cfg as pve-storage's SectionConfig writes it (`type: id` then tab-indented options)."""
    out: list[str] = []
    for s in storages:
        out.append(f"{s.type}: {s.id}")
        if s.path:
            out.append(f"\tpath {s.path}")
        if s.type == "lvmthin":
            out += ["\tthinpool data", "\tvgname pve"]
        if s.type == "drbd":
            out.append(f"\tcontroller {','.join(s.controllers) or 'localhost'}")
            out.append(f"\tresourcegroup {s.resourcegroup}")
        if s.content:
            out.append(f"\tcontent {','.join(s.content)}")
        if s.shared and s.type in {"nfs", "dir"}:
            out.append("\tshared 1")
        out.append("")
    return "\n".join(out)


def render_ha_resources(guests: list[Guest]) -> str:
    """ha/resources.cfg (pve-ha-manager src/PVE/HA/Resources.pm section format)."""
    out: list[str] = []
    for g in sorted(guests, key=lambda g: g.vmid):
        if g.ha is None:
            continue
        out.append(f"{'vm' if g.kind == 'qemu' else 'ct'}: {g.vmid}")
        out.append(f"\tstate {g.ha.state}")
        if g.ha.max_restart != 1:
            out.append(f"\tmax_restart {g.ha.max_restart}")
        if g.ha.max_relocate != 1:
            out.append(f"\tmax_relocate {g.ha.max_relocate}")
        out.append("")
    return "\n".join(out)


def node_root(root: Path, node: str) -> Path:
    """The directory standing in for `node`'s local filesystem root."""
    return root / "node-roots" / node


def storage_dir(root: Path, node: str, storage: Storage) -> Path | None:
    """Where a directory storage's `path` lives on `node` (None for block storages)."""
    if storage.path is None:
        return None
    return node_root(root, node) / storage.path.lstrip("/")
