"""Which gates a guest is a member of, and why (design.md, "The rule").

A guest is a member of a gate when one of the volumes its start uses lives on a storage the gate
lists, or it carries one of the gate's tags, or its VMID is listed. The gate's own VM is never a
member of it (else the controller VM would wait for itself). Every reason is kept, so the hook's
task-log line, `startgate why` and the coordinator can all say which disk, tag or listing it was.

Pure: no I/O, stdlib only. Callers turn their config (the pydantic `Gate`, or the hook's cached
copy) into `GateRule`s with `GateRule.of`, which accepts anything with the gate's attributes.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: this module is on the hook's hot path (startgate._lite)
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import NamedTuple, Protocol

    from startgate.core.guestconf import GuestConfig

    class GateLike(Protocol):
        """The attributes of a gate that decide membership (the config's `Gate` has them)."""

        @property
        def name(self) -> str: ...
        @property
        def vmid(self) -> int | None: ...
        @property
        def storages(self) -> Iterable[str]: ...
        @property
        def tags(self) -> Iterable[str]: ...
        @property
        def vmids(self) -> Iterable[int]: ...

else:
    from startgate._lite import NamedTuple

STORAGE = "storage"
TAG = "tag"
VMID = "vmid"


class GateRule(NamedTuple):
    """A gate's membership rule: its name, its own VM (exempt) and what makes a guest a member."""

    name: str
    vmid: int | None
    storages: frozenset[str]
    tags: frozenset[str]  # lower case
    vmids: frozenset[int]

    @classmethod
    def of(cls, gate: GateLike) -> GateRule:
        """The rule of a configured gate."""
        return cls(
            name=gate.name,
            vmid=gate.vmid,
            storages=frozenset(gate.storages),
            tags=frozenset(t.lower() for t in gate.tags),
            vmids=frozenset(gate.vmids),
        )


class Reason(NamedTuple):
    """One reason a guest is a member: a volume on a listed storage, a tag, or a listed VMID."""

    kind: str  # STORAGE, TAG or VMID
    detail: str  # the storage, the tag, or the VMID as text
    key: str | None = None  # the volume's config key (scsi0, rootfs, mp1) for STORAGE

    def describe(self) -> str:
        """A short phrase for people: `scsi0 on storage "drbdstorage"`."""
        if self.kind == STORAGE:
            return f'{self.key} on storage "{self.detail}"'
        if self.kind == TAG:
            return f'tag "{self.detail}"'
        return f"VMID {self.detail} listed"


class Membership(NamedTuple):
    """A guest's membership of one gate, with every reason for it (never empty)."""

    gate: str
    reasons: tuple[Reason, ...]

    def describe(self) -> str:
        """`gate "linstor": scsi0 on storage "drbdstorage", tag "db"`."""
        return f'gate "{self.gate}": ' + ", ".join(r.describe() for r in self.reasons)


def reasons(guest: GuestConfig, rule: GateRule) -> tuple[Reason, ...]:
    """Every reason `guest` is a member of `rule`'s gate; empty when it is not (or is the gate's VM)."""
    if rule.vmid is not None and guest.vmid == rule.vmid:
        return ()
    out: list[Reason] = []
    seen: set[tuple[str, str]] = set()
    for vol in guest.volumes:
        if vol.storage is not None and vol.storage in rule.storages and (vol.key, vol.storage) not in seen:
            seen.add((vol.key, vol.storage))
            out.append(Reason(STORAGE, vol.storage, vol.key))
    out.extend(Reason(TAG, tag) for tag in guest.tags if tag in rule.tags)
    if guest.vmid in rule.vmids:
        out.append(Reason(VMID, str(guest.vmid)))
    return tuple(out)


def memberships(guest: GuestConfig, rules: Iterable[GateRule]) -> tuple[Membership, ...]:
    """The gates `guest` is a member of, in the order of `rules`, each with its reasons."""
    out = []
    for rule in rules:
        why = reasons(guest, rule)
        if why:
            out.append(Membership(rule.name, why))
    return tuple(out)


def exempt_from(guest: GuestConfig, rules: Iterable[GateRule]) -> tuple[str, ...]:
    """The gates whose own VM `guest` is (it would otherwise be a member of them, or not)."""
    return tuple(r.name for r in rules if r.vmid is not None and r.vmid == guest.vmid)
