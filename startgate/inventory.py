"""The guests of the cluster as pmxcfs lists them: `<config_dir>/nodes/<node>/{qemu-server,lxc}/<vmid>.conf`.

Paths as proxmox/pve-cluster `cfs_config_path` builds them. Every node sees every node's
directory, so one scan finds every guest of the cluster and the node it belongs to. Names that
are not a node name or a VMID are skipped (nothing from the file system reaches a topic or a
command line unchecked).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from startgate.names import check_name, check_vmid

log = logging.getLogger(__name__)

GuestType = Literal["qemu", "lxc"]
_SUBDIRS: tuple[tuple[str, GuestType], ...] = (("qemu-server", "qemu"), ("lxc", "lxc"))


@dataclass(frozen=True)
class GuestFile:
    """Where one guest's config lives: its VMID, node, type and path."""

    vmid: int
    node: str
    type: GuestType
    path: Path

    @property
    def label(self) -> str:
        """`VM 101` or `CT 101`, as Proxmox names guests."""
        return f"{'CT' if self.type == 'lxc' else 'VM'} {self.vmid}"

    @property
    def api_path(self) -> str:
        """`/nodes/<node>/<qemu|lxc>/<vmid>/config`, the guest's config in the API."""
        return f"/nodes/{self.node}/{self.type}/{self.vmid}/config"

    def read(self) -> str:
        """The config text (OSError when it vanished or cannot be read)."""
        return self.path.read_text(encoding="utf-8", errors="replace")


def nodes_dir(config_dir: Path) -> Path:
    """`<config_dir>/nodes`."""
    return config_dir / "nodes"


def node_names(config_dir: Path) -> list[str]:
    """The cluster's nodes, as directories under `<config_dir>/nodes` (sorted)."""
    try:
        entries = sorted(p.name for p in nodes_dir(config_dir).iterdir() if p.is_dir())
    except OSError:
        return []
    out = []
    for name in entries:
        try:
            out.append(check_name(name, "node name"))
        except ValueError:
            log.warning("skipping %s: not a node name", nodes_dir(config_dir) / name)
    return out


def scan(config_dir: Path) -> list[GuestFile]:
    """Every guest config of the cluster, sorted by VMID (a VMID seen twice: the first node wins)."""
    found: dict[int, GuestFile] = {}
    for node in node_names(config_dir):
        for sub, guest_type in _SUBDIRS:
            folder = nodes_dir(config_dir) / node / sub
            try:
                files = sorted(folder.glob("*.conf"))
            except OSError:
                continue
            for path in files:
                try:
                    vmid = check_vmid(path.stem)
                except ValueError:
                    continue
                if vmid in found:
                    log.warning("VMID %d: configs %s and %s; using the first", vmid, found[vmid].path, path)
                    continue
                found[vmid] = GuestFile(vmid, node, guest_type, path)
    return [found[v] for v in sorted(found)]


def find(config_dir: Path, vmid: int) -> GuestFile | None:
    """The config of guest `vmid`, or None when no node has it."""
    for node in node_names(config_dir):
        for sub, guest_type in _SUBDIRS:
            path = nodes_dir(config_dir) / node / sub / f"{vmid}.conf"
            if path.is_file():
                return GuestFile(vmid, node, guest_type, path)
    return None


def readable(config_dir: Path) -> bool:
    """True when `<config_dir>/nodes` can be listed (pmxcfs is mounted, or the test tree exists)."""
    return nodes_dir(config_dir).is_dir()
