"""A pure parser of Proxmox guest config text (`/etc/pve/nodes/<node>/{qemu-server,lxc}/<vmid>.conf`).

It reads what startgate needs to decide about a start: the volumes and their storages, tags, the
`lock:`, the hookscript, `onboot`, `startup: order=N,up=S,down=S` and the guest's name. The line
grammar follows the real parsers (proxmox/qemu-server: src/PVE/QemuServer.pm `parse_vm_config`;
proxmox/pve-container: src/PVE/LXC/Config.pm `parse_pct_config`):

- `key: value` lines; `#` lines are the description; blank lines are skipped;
- `[name]` starts a snapshot section, `[special:cloudinit]`/`[special:fleecing]` a VM's special
  section, any other `[...]` an unknown section: all are ignored, the running config is the main one;
- `[PENDING]` (VMs) and `[pve:pending]` (containers) hold changes not yet applied;
- a line that does not parse is skipped (Proxmox warns and skips it too) and listed in `problems`.

Volumes, as the start path activates them (qemu-server `get_current_vm_volumes`, pve-container
`get_vm_volumes`): for VMs `ideN`, `scsiN`, `virtioN`, `sataN`, `efidisk0`, `tpmstate0` and the
hibernation state `vmstate`; for containers `rootfs` and `mpN` of type volume (not bind or device
mounts). CD-ROMs count: an ISO or a cloud-init drive on a storage is activated like a disk.

`unusedN` volumes are detached: no start activates them, so they never make a guest a member.
They are kept apart in `GuestConfig.unused` for display.

Pending volumes count as well as current ones. A normal start applies pending changes *before*
pre-start (qemu-server `vm_start_nolock` calls `vmconfig_apply_pending` and writes the config;
pve-container `vm_start` does the same), so the hook usually sees no pending section at all. One is
left when the start does not apply it (a VM resumed from hibernation or started from a state
file) or when applying failed. The hook cannot tell which set the start will use, so it takes
the union: holding a guest that did not need its gate costs a short wait; starting one that did
is the failure startgate exists to prevent. Pending deletions are ignored for the same reason.

Pure: no I/O, stdlib only (startgate/core/ruff.toml). Value types are NamedTuples; at run time
they come from startgate._lite, so the hookscript's hot path never imports `typing`.
"""

from __future__ import annotations

from startgate.errors import GuestConfigError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: this module is on the hook's hot path (startgate._lite)
if TYPE_CHECKING:
    from typing import NamedTuple
else:
    from startgate._lite import NamedTuple

QEMU = "qemu"
LXC = "lxc"

# Volume kinds.
DISK = "disk"  # a VM disk (ide/scsi/virtio/sata, efidisk0, tpmstate0)
CDROM = "cdrom"  # a VM drive with media=cdrom (ISO or cloud-init)
VMSTATE = "vmstate"  # a hibernated VM's RAM state, loaded on resume
ROOTFS = "rootfs"  # a container's root file system
MOUNT = "mp"  # a container mount point of type volume
UNUSED = "unused"  # a detached volume: never activated at start

_QEMU_BUSES = {"ide": 4, "scsi": 31, "virtio": 16, "sata": 6}  # qemu-server Drive.pm $MAX_*_DISKS
_MAX_MOUNT_POINTS = 256  # pve-container Config.pm $MAX_MOUNT_POINTS
_MAX_UNUSED = 256


class Volume(NamedTuple):
    """One volume of a guest: its config key, volume id, storage (None for paths) and kind."""

    key: str
    volid: str
    storage: str | None
    kind: str
    pending: bool = False

    def describe(self) -> str:
        """`scsi0 (drbdstorage:vm-101-disk-1)`, with `pending` when it is a pending change."""
        return f"{self.key}{' (pending)' if self.pending else ''} ({self.volid})"


class StartupOrder(NamedTuple):
    """`startup: order=N,up=S,down=S`; None where a part is not set."""

    order: int | None = None
    up: int | None = None
    down: int | None = None


class GuestConfig(NamedTuple):
    """What startgate reads from one guest config."""

    vmid: int
    type: str  # "qemu" or "lxc"
    name: str | None = None  # `name` (VM) or `hostname` (container)
    volumes: tuple[Volume, ...] = ()  # used at start: current and pending
    unused: tuple[Volume, ...] = ()  # `unusedN`: detached, never activated at start
    tags: tuple[str, ...] = ()  # lower case, in config order, no duplicates
    lock: str | None = None
    hookscript: str | None = None
    onboot: bool = False
    startup: StartupOrder = StartupOrder()
    template: bool = False
    has_pending: bool = False
    problems: tuple[str, ...] = ()  # lines skipped, as Proxmox skips them

    @property
    def storages(self) -> frozenset[str]:
        """The storages of the volumes used at start."""
        return frozenset(v.storage for v in self.volumes if v.storage is not None)

    @property
    def label(self) -> str:
        """`VM 101` or `CT 101`, as Proxmox names guests in its task log."""
        return f"{'CT' if self.type == LXC else 'VM'} {self.vmid}"


def split_list(text: str) -> tuple[str, ...]:
    """Split a Proxmox list value on `,`, `;` and white space (pve-common `PVE::Tools::split_list`)."""
    for sep in ",;\t\r\n":
        text = text.replace(sep, " ")
    return tuple(text.split())


def parse_tags(text: str) -> tuple[str, ...]:
    """The tags of a `tags:` value, lower case (Proxmox compares them case-insensitively), deduplicated."""
    out: list[str] = []
    for tag in split_list(text):
        low = tag.lower()
        if low not in out:
            out.append(low)
    return tuple(out)


def parse_property_string(text: str, default_key: str) -> dict[str, str]:
    """Parse `a,b=c,d="e,f"` into a mapping; the item without `=` is `default_key`'s value.

    Raises ValueError on an unterminated quote or a second default item.
    """
    items: list[str] = []
    cur: list[str] = []
    quoted = False
    i = 0
    while i < len(text):
        ch = text[i]
        if quoted and ch == "\\" and i + 1 < len(text):
            cur.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    if quoted:
        raise ValueError(f"unterminated quote in {text!r}")
    items.append("".join(cur))
    out: dict[str, str] = {}
    for item in items:
        if not item:
            continue
        key, eq, value = item.partition("=")
        if not eq:
            key, value = default_key, item
        if key in out:
            raise ValueError(f"{key!r} given twice in {text!r}")
        out[key.strip()] = value.strip()
    return out


def volume_storage(volid: str) -> str | None:
    """The storage id of `storage:volname` (pve-storage `parse_volume_id`), None for paths and `none`."""
    storage, colon, rest = volid.partition(":")
    if not colon or not rest or not storage:
        return None
    if not (storage[0].isascii() and storage[0].isalpha()):
        return None
    if not storage[-1].isascii() or not storage[-1].isalnum():
        return None
    if not all(c.isascii() and (c.isalnum() or c in "-_.") for c in storage):
        return None
    return storage


def _numbered(key: str, prefix: str, limit: int) -> bool:
    rest = key[len(prefix) :]
    return key.startswith(prefix) and rest.isdecimal() and rest == str(int(rest)) and int(rest) < limit


def volume_kind(key: str, guest_type: str) -> str | None:
    """The volume kind a config key names for this guest type, or None if it is not a volume key."""
    if _numbered(key, "unused", _MAX_UNUSED):
        return UNUSED
    if guest_type == LXC:
        fixed, numbered = {"rootfs": ROOTFS}, {"mp": (_MAX_MOUNT_POINTS, MOUNT)}
    else:
        fixed = {"efidisk0": DISK, "tpmstate0": DISK, "vmstate": VMSTATE}
        numbered = {bus: (limit, DISK) for bus, limit in _QEMU_BUSES.items()}
    if key in fixed:
        return fixed[key]
    stem = key.rstrip("0123456789")
    if stem in numbered and _numbered(key, stem, numbered[stem][0]):
        return numbered[stem][1]
    return None


def parse_volume(key: str, value: str, guest_type: str, pending: bool = False) -> Volume | None:
    """The volume a config line names; None for a key that is not a volume; ValueError if garbled."""
    kind = volume_kind(key, guest_type)
    if kind is None:
        return None
    if kind in {UNUSED, VMSTATE}:
        volid = value.strip()
    else:
        props = parse_property_string(value, "volume" if guest_type == LXC else "file")
        volid = props.get("volume" if guest_type == LXC else "file", "")
        if kind == DISK and props.get("media") == "cdrom":
            kind = CDROM
    if not volid:
        raise ValueError(f"{key}: no volume in {value!r}")
    storage = volume_storage(volid)
    if volid.startswith("/"):
        storage = None  # a bind/device mount or a pass-through path: no storage to activate
    return Volume(key, volid, storage, kind, pending)


def parse_startup(value: str) -> StartupOrder:
    """Parse `order=N,up=S,down=S` (each optional); ValueError if a part is not a whole number."""
    props = parse_property_string(value, "order")
    parts: dict[str, int] = {}
    for name in ("order", "up", "down"):
        if name in props:
            text = props.pop(name)
            if not text.isdecimal():
                raise ValueError(f"startup: {name}={text!r} is not a whole number")
            parts[name] = int(text)
    if props:
        raise ValueError(f"startup: unknown part(s) {', '.join(sorted(props))}")
    return StartupOrder(**parts)


def _key_value(line: str) -> tuple[str, str] | None:
    """Split `key: value` as the Proxmox parsers do (`^([a-z][a-z_\\-]*\\d*):\\s*(.+?)\\s*$`)."""
    key, colon, value = line.partition(":")
    if not colon or not key or not key[0].isascii() or not key[0].islower():
        return None
    stem = key.rstrip("0123456789")
    if not all(c.isascii() and (c.islower() or c in "_-") for c in stem):
        return None
    value = value.strip()
    return (key, value) if value else None


def _section(line: str) -> str | None:
    """The section a `[...]` header starts: "pending", "other" (snapshot/special/unknown) or None."""
    if not (line.startswith("[") and line.rstrip().endswith("]")):
        return None
    name = line.rstrip()[1:-1].lower()
    return "pending" if name in {"pending", "pve:pending"} else "other"


class _Reader:
    """Accumulates what `parse` reads, line by line."""

    def __init__(self, guest_type: str, where: str) -> None:
        self.guest_type = guest_type
        self.where = where
        self.main: dict[str, str] = {}
        self.volumes: list[Volume] = []
        self.unused: list[Volume] = []
        self.problems: list[str] = []
        self.section = "main"
        self.has_pending = False
        self.parsed_any = False

    def line(self, lineno: int, line: str) -> None:
        header = _section(line)
        if header is not None:
            self.section = header
            self.has_pending = self.has_pending or header == "pending"
            return
        if line.startswith("#") or self.section == "other":
            return
        if line.startswith("lxc.") and self.guest_type == LXC:
            return  # raw LXC keys (`lxc.apparmor.profile: ...`): nothing startgate needs
        kv = _key_value(line)
        if kv is None:
            self.problems.append(f"{self.where} line {lineno}: cannot parse {line[:120]!r}")
            return
        self.parsed_any = True
        key, value = kv
        if key == "cdrom" and self.guest_type == QEMU:
            key = "ide2"  # qemu-server's alias
        try:
            vol = parse_volume(key, value, self.guest_type, pending=self.section == "pending")
        except ValueError as exc:
            self.problems.append(f"{self.where} line {lineno}: {exc}")
            return
        if vol is not None:
            (self.unused if vol.kind == UNUSED else self.volumes).append(vol)
        elif self.section == "main":
            self.main[key] = value

    def result(self, vmid: int) -> GuestConfig:
        main = self.main
        startup = StartupOrder()
        if "startup" in main:
            try:
                startup = parse_startup(main["startup"])
            except ValueError as exc:
                self.problems.append(f"{self.where}: {exc}")
        return GuestConfig(
            vmid=vmid,
            type=self.guest_type,
            name=main.get("hostname" if self.guest_type == LXC else "name"),
            volumes=tuple(self.volumes),
            unused=tuple(self.unused),
            tags=parse_tags(main.get("tags", "")),
            lock=main.get("lock"),
            hookscript=main.get("hookscript"),
            onboot=main.get("onboot", "0").strip() == "1",
            startup=startup,
            template=main.get("template", "0").strip() == "1",
            has_pending=self.has_pending,
            problems=tuple(self.problems),
        )


def parse(text: str, vmid: int, guest_type: str, source: str = "") -> GuestConfig:
    """Parse a guest config; GuestConfigError when `text` is not a guest config at all (binary, empty)."""
    where = source or f"{'CT' if guest_type == LXC else 'VM'} {vmid} config"
    if guest_type not in {QEMU, LXC}:
        raise GuestConfigError(f"{where}: unknown guest type {guest_type!r}")
    if "\0" in text:
        raise GuestConfigError(f"{where}: contains NUL bytes: not a Proxmox guest config")
    reader = _Reader(guest_type, where)
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r")
        if line.strip():
            reader.line(lineno, line)
    if not reader.parsed_any:
        raise GuestConfigError(f"{where}: no `key: value` line: not a Proxmox guest config")
    return reader.result(vmid)
