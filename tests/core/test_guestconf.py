"""The guest config parser against real-shaped VM and container configs."""

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from startgate.core import guestconf
from startgate.core.guestconf import CDROM, DISK, MOUNT, ROOTFS, StartupOrder, Volume
from startgate.errors import GuestConfigError

PVE = Path(__file__).parents[1] / "hooks" / "fixtures" / "pve"


def load(vmid: int, kind: str = "qemu") -> guestconf.GuestConfig:
    """Parse a fixture config."""
    sub = "qemu-server" if kind == "qemu" else "lxc"
    text = (PVE / sub / f"{vmid}.conf").read_bytes().decode("utf-8", errors="replace")
    return guestconf.parse(text, vmid, kind)


def test_vm_volumes_come_from_the_main_section_only() -> None:
    """VM 101: its disks, EFI/TPM and cloud-init drive count; the snapshot's vmstate does not."""
    g = load(101)
    assert [(v.key, v.storage, v.kind) for v in g.volumes] == [
        ("efidisk0", "local-lvm", DISK),
        ("ide2", "drbdstorage", CDROM),
        ("scsi0", "drbdstorage", DISK),
        ("scsi1", "drbdstorage", DISK),
        ("tpmstate0", "local-lvm", DISK),
    ]
    assert g.storages == {"drbdstorage", "local-lvm"}
    assert g.name == "web1"
    assert g.tags == ("prod", "web")
    assert g.onboot is True
    assert g.startup == StartupOrder(order=2, up=30, down=60)
    assert g.hookscript == "local:snippets/startgate-hook"
    assert g.lock is None
    assert g.problems == ()
    assert g.label == "VM 101"


def test_a_snapshot_on_another_storage_does_not_count() -> None:
    """VM 102: its snapshot and its unused disk are on drbdstorage, its running config is not."""
    g = load(102)
    assert g.storages == {"local-lvm", "local"}
    assert [v.key for v in g.unused] == ["unused0"]
    assert g.unused[0].storage == "drbdstorage"


def test_pending_volumes_count_with_the_pending_flag() -> None:
    """VM 103: a disk added in [PENDING] is part of the start's volumes."""
    g = load(103)
    assert g.has_pending is True
    assert Volume("scsi1", "drbdstorage:vm-103-disk-1", "drbdstorage", DISK, pending=True) in g.volumes
    assert "drbdstorage" in g.storages


def test_unused_volumes_are_never_start_volumes() -> None:
    """VM 104: unused0/unused1 are detached and not activated by a start."""
    g = load(104)
    assert g.storages == {"local-lvm"}
    assert len(g.unused) == 2


def test_lock_and_tags_case() -> None:
    """VM 105 carries `lock: backup`; VM 106's tags are read case-insensitively with `,` and spaces."""
    assert load(105).lock == "backup"
    assert load(106).tags == ("needs-linstor", "app")


def test_a_raw_device_path_has_no_storage() -> None:
    """VM 150 passes through a disk by path: no storage to activate."""
    (vol,) = load(150).volumes
    assert vol.storage is None
    assert vol.volid.startswith("/dev/disk/by-id/")


def test_container_rootfs_and_volume_mount_points() -> None:
    """CT 201: rootfs on drbdstorage; a bind mount is not a volume; raw lxc.* keys are skipped."""
    g = load(201, "lxc")
    assert [(v.key, v.storage, v.kind) for v in g.volumes] == [
        ("mp0", None, MOUNT),
        ("rootfs", "drbdstorage", ROOTFS),
    ]
    assert g.name == "dns1"
    assert g.label == "CT 201"
    assert g.startup.order == 3
    assert g.problems == ()


def test_container_mount_point_and_pending_section() -> None:
    """CT 202's mp1 and CT 203's mp0 in [pve:pending] are on drbdstorage; CT 203's snapshot is ignored."""
    assert "drbdstorage" in load(202, "lxc").storages
    g = load(203, "lxc")
    assert g.has_pending is True
    assert {(v.key, v.pending) for v in g.volumes} == {("rootfs", False), ("mp0", True)}


def test_binary_garbage_is_not_a_config() -> None:
    """VM 107 is binary junk: a GuestConfigError names the file."""
    with pytest.raises(GuestConfigError, match="107"):
        load(107)


def test_empty_or_comment_only_text_is_not_a_config() -> None:
    """A config needs at least one key: value line."""
    with pytest.raises(GuestConfigError, match="no `key: value` line"):
        guestconf.parse("# just a description\n\n", 300, "qemu")


def test_unparsable_lines_are_skipped_like_proxmox_does() -> None:
    """A line Proxmox would warn about and skip is listed in problems; the rest still counts."""
    g = guestconf.parse("name: x\nthis is not a key value\nscsi0: drbdstorage:vm-1-disk-0\n", 301, "qemu")
    assert g.storages == {"drbdstorage"}
    assert len(g.problems) == 1
    assert "line 2" in g.problems[0]


def test_bad_startup_value_is_a_problem_not_an_error() -> None:
    """`startup: order=first` cannot be read; the order stays unknown."""
    g = guestconf.parse("name: x\nstartup: order=first,up=5\n", 302, "qemu")
    assert g.startup == StartupOrder()
    assert "order='first'" in g.problems[0]


def test_startup_forms() -> None:
    """`startup:` accepts a bare order and any subset of its parts."""
    assert guestconf.parse_startup("3") == StartupOrder(order=3)
    assert guestconf.parse_startup("up=10") == StartupOrder(up=10)
    with pytest.raises(ValueError, match="unknown"):
        guestconf.parse_startup("order=1,later=2")


def test_explicit_file_key_and_quoted_values() -> None:
    """`file=` names the volume explicitly; quoted values may hold commas."""
    vol = guestconf.parse_volume("virtio3", 'file=drbdstorage:vm-9-disk-0,serial="a,b"', "qemu")
    assert vol == Volume("virtio3", "drbdstorage:vm-9-disk-0", "drbdstorage", DISK)


def test_keys_that_are_not_volumes() -> None:
    """net0, scsi31 (out of range) and mp256 are not volume keys."""
    assert guestconf.volume_kind("net0", "qemu") is None
    assert guestconf.volume_kind("scsi31", "qemu") is None
    assert guestconf.volume_kind("scsi30", "qemu") == DISK
    assert guestconf.volume_kind("mp256", "lxc") is None
    assert guestconf.volume_kind("scsi0", "lxc") is None
    assert guestconf.volume_kind("vmstate", "qemu") == "vmstate"


@pytest.mark.parametrize(
    ("volid", "storage"),
    [
        ("drbdstorage:vm-1-disk-0", "drbdstorage"),
        ("local:iso/x.iso", "local"),
        ("none", None),
        ("cdrom", None),
        ("/dev/sdb", None),
        ("1bad:x", None),
        ("bad-:x", None),
        ("ok.x_y-z:vol", "ok.x_y-z"),
    ],
)
def test_volume_storage(volid: str, storage: str | None) -> None:
    """The storage id follows pve-storage's parse_volume_id."""
    assert guestconf.volume_storage(volid) == storage


@given(st.lists(st.from_regex(r"[a-z0-9_][a-z0-9_+.-]{0,10}", fullmatch=True), max_size=6))
def test_tags_round_trip_with_any_separator(tags: list[str]) -> None:
    """Tags joined by `;`, `,` or spaces split back into the same tags (deduplicated, in order)."""
    expected = tuple(dict.fromkeys(tags))
    for sep in (";", ",", " ", " ; "):
        assert guestconf.parse_tags(sep.join(tags)) == expected


@given(st.text(max_size=400))
def test_parse_never_fails_other_than_with_guest_config_error(text: str) -> None:
    """Any text either parses or raises GuestConfigError; nothing else escapes."""
    with contextlib.suppress(GuestConfigError):
        guestconf.parse(text, 400, "qemu")
