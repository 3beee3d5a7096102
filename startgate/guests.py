"""The cluster's guests parsed: each config (startgate.core.guestconf) and its gates (core.membership).

Reads `<config_dir>/nodes/*/{qemu-server,lxc}/<vmid>.conf` through `startgate.inventory`; used by
`why`, `doctor` and `attach`. A config that cannot be read or parsed is reported, never fatal
to the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from startgate import inventory
from startgate.core import guestconf, membership
from startgate.core.guestconf import GuestConfig
from startgate.core.membership import GateRule, Membership
from startgate.errors import GuestConfigError

if TYPE_CHECKING:
    from pathlib import Path

    from startgate.core.membership import GateLike
    from startgate.inventory import GuestFile


@dataclass(frozen=True)
class Guest:
    """A guest's config file, its parsed config, and the gates it belongs to (with the reasons)."""

    file: GuestFile
    config: GuestConfig
    memberships: tuple[Membership, ...]
    exempt_from: tuple[str, ...]  # the gates whose own VM this guest is

    @property
    def vmid(self) -> int:
        """The guest's VMID."""
        return self.file.vmid

    @property
    def gates(self) -> tuple[str, ...]:
        """The names of the gates this guest is a member of."""
        return tuple(ms.gate for ms in self.memberships)

    @property
    def label(self) -> str:
        """`VM 101 (web1)` or `CT 102`."""
        name = f" ({self.config.name})" if self.config.name else ""
        return f"{self.file.label}{name}"


def rules(gates: Iterable[GateLike]) -> tuple[GateRule, ...]:
    """The membership rules of the configured gates."""
    return tuple(GateRule.of(g) for g in gates)


def load(gf: GuestFile, gate_rules: Sequence[GateRule]) -> Guest:
    """Read and parse one guest config and work out its gates; GuestConfigError when it cannot."""
    try:
        text = gf.read()
    except OSError as exc:
        raise GuestConfigError(f"{gf.path}: cannot read {gf.label}'s config: {exc.strerror}") from None
    conf = guestconf.parse(text, gf.vmid, gf.type, str(gf.path))
    return Guest(gf, conf, membership.memberships(conf, gate_rules), membership.exempt_from(conf, gate_rules))


def find(config_dir: Path, vmid: int, gate_rules: Sequence[GateRule]) -> Guest | None:
    """Guest `vmid` parsed, or None when no node has its config (GuestConfigError if unparsable)."""
    gf = inventory.find(config_dir, vmid)
    return None if gf is None else load(gf, gate_rules)


def load_all(config_dir: Path, gate_rules: Sequence[GateRule]) -> tuple[list[Guest], list[str]]:
    """Every guest of the cluster, parsed, and the problems met on the way (unreadable configs)."""
    guests: list[Guest] = []
    problems: list[str] = []
    for gf in inventory.scan(config_dir):
        try:
            guests.append(load(gf, gate_rules))
        except GuestConfigError as exc:
            problems.append(str(exc))
    return guests, problems
