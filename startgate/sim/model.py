"""The simulated cluster's state: guests, their volumes and startup order, nodes, storages.

Small typed records, mutated only under the cluster's lock. Parsing follows the real formats:
`startup` like pve-common's `pve_parse_startup_order`, volumes like `<storage>:<volname>,size=..`.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Literal

GuestKind = Literal["qemu", "lxc"]
StorageType = Literal["dir", "lvmthin", "lvm", "zfspool", "nfs", "drbd"]

# proxmox/pve-common: src/PVE/JSONSchema.pm `pve_parse_startup_order`: `[[order=]\d+] [,up=\d+] [,down=\d+]`.
_STARTUP_PART = re.compile(r"^(?:(order|up|down)=)?(\d+)$")
_VOLNAME = re.compile(r"^(?:vm|base|subvol)-(\d+)-disk-(\d+)$")


@dataclass(frozen=True)
class Startup:
    """A guest's `startup:` property: order (None: last), `up` delay and `down` timeout in seconds."""

    order: int | None = None
    up: int | None = None
    down: int | None = None

    @classmethod
    def parse(cls, text: str) -> Startup:
        """Parse `order=N,up=S,down=S` (a bare number is the order), or raise ValueError."""
        values: dict[str, int] = {}
        for raw in text.split(","):
            part = raw.strip()
            m = _STARTUP_PART.match(part)
            if not m:
                raise ValueError(f"startup {text!r}: cannot parse {part!r} (use order=N,up=S,down=S)")
            key = m.group(1) or "order"
            if key in values:
                raise ValueError(f"startup {text!r}: {key} given twice")
            values[key] = int(m.group(2))
        return cls(values.get("order"), values.get("up"), values.get("down"))

    def render(self) -> str:
        """The property value as Proxmox writes it."""
        parts = [
            f"{k}={v}"
            for k, v in (("order", self.order), ("up", self.up), ("down", self.down))
            if v is not None
        ]
        return ",".join(parts)


@dataclass(frozen=True)
class Volume:
    """One guest disk: config key (scsi0, rootfs, mp0), storage id, volume name and size."""

    key: str
    storage: str
    volname: str
    size: str

    @property
    def volid(self) -> str:
        """`<storage>:<volname>`, the volume id Proxmox uses everywhere."""
        return f"{self.storage}:{self.volname}"

    def render(self) -> str:
        """The config line value (`drbdstorage:vm-101-disk-0,size=32G`)."""
        return f"{self.volid},size={self.size}"


def parse_disk(spec: str, vmid: int, kind: GuestKind, index: int) -> Volume:
    """Parse a scenario disk `storage[:volname][,size=NG]` into a Volume with the n-th config key."""
    head, _, opts = spec.partition(",")
    size = "8G" if kind == "lxc" else "32G"
    if opts:
        m = re.fullmatch(r"size=(\d+[KMGT]?)", opts.strip())
        if not m:
            raise ValueError(f"disk {spec!r}: only size=N[KMGT] may follow the volume")
        size = m.group(1)
    storage, _, volname = head.partition(":")
    if not re.fullmatch(r"[a-z][a-z0-9_.-]*", storage, re.IGNORECASE):
        raise ValueError(f"disk {spec!r}: {storage!r} is not a storage id")
    if not volname:
        volname = f"vm-{vmid}-disk-{index}"
    m = _VOLNAME.match(volname)
    if not m or int(m.group(1)) != vmid:
        raise ValueError(f"disk {spec!r}: volume name must be vm-{vmid}-disk-N")
    key = f"scsi{index}"
    if kind == "lxc":
        key = "rootfs" if index == 0 else f"mp{index - 1}"
    return Volume(key, storage, volname, size)


@dataclass
class HAResource:
    """An HA resource (`/etc/pve/ha/resources.cfg`) and the CRM's view of it (manager_status)."""

    sid: str
    state: str = "started"  # requested: started, stopped, disabled, ignored
    max_restart: int = 1
    max_relocate: int = 1
    crm_state: str = "stopped"  # stopped, started, migrate, relocate, fence, recovery, error
    running: bool = False  # the CRM saw a successful start (only valid while crm_state == started)
    failed_nodes: list[str] = field(default_factory=list)
    target: str | None = None
    lrm_result: int | None = None  # exit code the LRM reported, not yet read by the CRM
    tries: int = 0  # the LRM's restart counter on the current node
    start_tries: int = 0  # the LRM fair sorter's counter for the queued command

    @property
    def managed(self) -> bool:
        """HA-managed as pve-ha-manager counts it (src/PVE/HA/Config.pm): any state but `ignored`."""
        return self.state != "ignored"


@dataclass
class Guest:
    """A VM or container: its config, where it is, and whether it runs."""

    vmid: int
    kind: GuestKind
    name: str
    node: str
    volumes: tuple[Volume, ...]
    onboot: bool = False
    startup: Startup = Startup()
    tags: tuple[str, ...] = ()
    hookscript: str | None = None
    lock: str | None = None
    memory: int = 2048
    ha: HAResource | None = None
    running: bool = False
    running_since: float | None = None  # simulated elapsed seconds
    # The config flock (/var/lock/qemu-server/lock-<vmid>.conf or /run/lock/lxc/pve-config-<vmid>.lock).
    conf_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def sid(self) -> str:
        """The HA service id: `vm:<vmid>` or `ct:<vmid>`."""
        return f"{'vm' if self.kind == 'qemu' else 'ct'}:{self.vmid}"

    @property
    def label(self) -> str:
        """`VM 101` or `CT 105`, as pve-manager's startall prints them."""
        return f"{'VM' if self.kind == 'qemu' else 'CT'} {self.vmid}"

    @property
    def ha_managed(self) -> bool:
        """True when an HA resource manages this guest."""
        return self.ha is not None and self.ha.managed

    def ha_resource(self) -> HAResource:
        """The guest's HA resource; ValueError when it has none (callers pass HA guests only)."""
        if self.ha is None:
            raise ValueError(f"guest {self.vmid} has no HA resource")
        return self.ha

    def lock_path(self) -> str:
        """The path of the config flock, as it appears in lock-timeout messages."""
        if self.kind == "qemu":
            return f"/var/lock/qemu-server/lock-{self.vmid}.conf"
        return f"/run/lock/lxc/pve-config-{self.vmid}.lock"

    def storages(self) -> set[str]:
        """The storage ids this guest has volumes on."""
        return {v.storage for v in self.volumes}


@dataclass
class Storage:
    """A storage.cfg entry. `controllers` are the LINSTOR controller addresses (drbd only)."""

    id: str
    type: StorageType
    content: tuple[str, ...]
    path: str | None = None
    shared: bool = False
    controllers: tuple[str, ...] = ()
    resourcegroup: str = "drbdgrp"
    keep_res: tuple[str, ...] = ()  # resources drbd.service brings up at boot (a kept .res file)


@dataclass
class Node:
    """A cluster node: when it powers on, whether it is up, what DRBD devices exist locally."""

    name: str
    boot_s: float
    cpus: int = 8
    never_returns: bool = False
    up: bool = False
    up_since: float | None = None
    local_drbd: set[str] = field(default_factory=set)
    pid_counter: int = 1000
    startall_done: bool = False
