"""Membership: which gates a guest belongs to, and why."""

from pathlib import Path

from startgate.config import Gate
from startgate.core import guestconf
from startgate.core.membership import STORAGE, TAG, VMID, GateRule, Reason, exempt_from, memberships

PVE = Path(__file__).parents[1] / "hooks" / "fixtures" / "pve"
LINSTOR = GateRule("linstor", 100, frozenset({"drbdstorage"}), frozenset({"needs-linstor"}), frozenset({150}))
NFS = GateRule("nfs", None, frozenset({"nfs-share"}), frozenset({"web"}), frozenset())


def load(vmid: int, kind: str = "qemu") -> guestconf.GuestConfig:
    """Parse a fixture config."""
    sub = "qemu-server" if kind == "qemu" else "lxc"
    return guestconf.parse((PVE / sub / f"{vmid}.conf").read_text(), vmid, kind)


def test_every_reason_is_kept() -> None:
    """VM 101 is a linstor member by three volumes, and an nfs member by its tag."""
    (lin, nfs) = memberships(load(101), [LINSTOR, NFS])
    assert lin.gate == "linstor"
    assert lin.reasons == (
        Reason(STORAGE, "drbdstorage", "ide2"),
        Reason(STORAGE, "drbdstorage", "scsi0"),
        Reason(STORAGE, "drbdstorage", "scsi1"),
    )
    assert nfs.reasons == (Reason(TAG, "web"),)
    volumes = ", ".join(f'{k} on storage "drbdstorage"' for k in ("ide2", "scsi0", "scsi1"))
    assert lin.describe() == f'gate "linstor": {volumes}'


def test_the_gates_own_vm_is_exempt() -> None:
    """VM 100 runs the controller: never a member of the linstor gate, even if it matched."""
    own = guestconf.parse("scsi0: drbdstorage:vm-100-disk-0\n", 100, "qemu")
    assert memberships(own, [LINSTOR]) == ()
    assert exempt_from(own, [LINSTOR, NFS]) == ("linstor",)


def test_non_members() -> None:
    """Snapshots, unused disks and other storages do not make a member (VMs 102, 104)."""
    assert memberships(load(102), [LINSTOR]) == ()
    assert memberships(load(104), [LINSTOR]) == ()


def test_pending_tag_and_listed_members() -> None:
    """A pending disk (103), a tag in any case (106) and a listed VMID (150) make members."""
    assert memberships(load(103), [LINSTOR])[0].reasons == (Reason(STORAGE, "drbdstorage", "scsi1"),)
    assert memberships(load(106), [LINSTOR])[0].reasons == (Reason(TAG, "needs-linstor"),)
    assert memberships(load(150), [LINSTOR])[0].reasons == (Reason(VMID, "150"),)


def test_containers() -> None:
    """CT 201 (rootfs), 202 (mp1) and 203 (pending mp0) are linstor members."""
    for vmid in (201, 202, 203):
        assert [m.gate for m in memberships(load(vmid, "lxc"), [LINSTOR])] == ["linstor"]


def test_rule_from_the_config_model() -> None:
    """GateRule.of takes the pydantic Gate as it is."""
    gate = Gate.model_validate(
        {
            "name": "linstor",
            "vmid": 100,
            "check": {"kind": "tcp", "host": "h", "port": 1},
            "storages": ["drbdstorage"],
            "tags": ["Needs-LINSTOR"],
        }
    )
    assert GateRule.of(gate) == GateRule(
        "linstor", 100, frozenset({"drbdstorage"}), frozenset({"needs-linstor"}), frozenset()
    )
