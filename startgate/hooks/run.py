"""One hookscript run: read the guest's config, decide, and hand members to the bus side.

pre-start allows at once (exit 0) when the guest is a member of no gate, is a live-migration
target (`PVE_MIGRATED_FROM` set and not empty; proxmox/qemu-server `vm_start_nolock` sets it
before running the hook), carries a `lock:` (backup, snapshot rollback), has a valid one-shot
release ticket, or when every gate it belongs to is healthy. Otherwise it holds: it publishes the
retained `held/<vmid>` record and a `guest/<vmid>/event`, prints one line, and exits 1. The other
phases publish their event and exit 0. Internal errors in pre-start allow the start and say so
loudly (task log and bus).

Only members are reported on the bus: a guest that belongs to no gate is of no interest to the
coordinator, and its run stays on the light path (no socket, json or typing import: about 25 ms
of interpreter and imports instead of 60). Everything a member needs lives in
startgate.hooks.member, imported only then.

This module is on the hot path: os.path instead of pathlib, no typing at run time.
"""

from __future__ import annotations

import os
import time

from startgate.core import guestconf
from startgate.core.membership import GateRule, memberships
from startgate.errors import GuestConfigError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: hot path (see startgate._lite)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import NamedTuple

    from startgate.deadline import Deadline
    from startgate.hooks.member import MemberRun
    from startgate.hooks.settings import HookSettings
else:
    from startgate._lite import NamedTuple

PRE_START = "pre-start"
PHASES = ("pre-start", "post-start", "pre-stop", "post-stop")
EXIT_ALLOW = 0
EXIT_HOLD = 1
MARGIN_S = 0.35  # interpreter start-up before the deadline starts, and exit after it ends


class Clock(NamedTuple):
    """Injected clocks: wall time for payloads and freshness, monotonic time for deadlines."""

    wall: Callable[[], float] = time.time
    mono: Callable[[], float] = time.monotonic


class Outcome(NamedTuple):
    """What a run decided: the exit code and the one line for the task log (or None)."""

    code: int
    line: str | None


def label(guest_type: str, vmid: int) -> str:
    """`VM 101` or `CT 101`, as Proxmox names guests in its task log."""
    return f"{'CT' if guest_type == guestconf.LXC else 'VM'} {vmid}"


def guest_config_path(config_dir: str, node: str, vmid: int) -> tuple[str, str] | None:
    """A guest's config file in `node`'s folder and its type, or None if there is none."""
    base = os.path.join(config_dir, "nodes", node)
    for sub, guest_type in (("qemu-server", guestconf.QEMU), ("lxc", guestconf.LXC)):
        path = os.path.join(base, sub, f"{vmid}.conf")
        if os.path.lexists(path):  # not isfile(): a config that cannot be read must say so, not vanish
            return path, guest_type
    return None


def read_guest(config_dir: str, node: str, vmid: int) -> guestconf.GuestConfig:
    """Read and parse a guest's config from `node`'s folder (GuestConfigError if missing or garbled)."""
    found = guest_config_path(config_dir, node, vmid)
    if found is None:
        where = os.path.join(config_dir, "nodes", node)
        raise GuestConfigError(f"no config for guest {vmid} under {where}/{{qemu-server,lxc}}/")
    path, guest_type = found
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8", errors="replace")
    except OSError as exc:
        raise GuestConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return guestconf.parse(text, vmid, guest_type, source=path)


class HookRun:
    """One call of the hookscript for one guest and phase."""

    def __init__(
        self,
        settings: HookSettings,
        vmid: int,
        phase: str,
        env: Mapping[str, str],
        deadline: Deadline,
        *,
        clock: Clock | None = None,
        say: Callable[[str], None] = print,
    ) -> None:
        self.settings = settings
        self.vmid = vmid
        self.phase = phase
        self.env = env
        self.deadline = deadline
        self.clock = clock or Clock()
        self.say = say
        self.node = settings.node_name
        self._member: MemberRun | None = None

    @property
    def member(self) -> MemberRun:
        """The bus side of this run (imported and built on first use: members only)."""
        if self._member is None:
            from startgate.hooks.member import MemberRun  # noqa: PLC0415 - members only: the light path stays light

            self._member = MemberRun(self)
        return self._member

    def run(self) -> Outcome:
        """Run the phase; never raises for trouble outside (broker, checks, files)."""
        try:
            if self.phase == PRE_START:
                return self.pre_start()
            return self.other_phase()
        finally:
            if self._member is not None:
                self._member.close()

    def other_phase(self) -> Outcome:
        """post-start, pre-stop, post-stop: report a member's phase; never block."""
        try:
            guest = read_guest(self.settings.config_dir, self.node, self.vmid)
        except GuestConfigError as exc:
            return Outcome(EXIT_ALLOW, f"startgate: {self.phase} of guest {self.vmid} not reported: {exc}")
        gates = self.gates_of(guest)
        if gates:
            self.member.report(guest.type, self.phase, gates)
        return Outcome(EXIT_ALLOW, None)

    def gates_of(self, guest: guestconf.GuestConfig) -> tuple[str, ...]:
        """The names of the gates `guest` is a member of."""
        return tuple(m.gate for m in memberships(guest, [GateRule.of(g) for g in self.settings.gates]))

    def pre_start(self) -> Outcome:
        """Decide whether this start may go ahead (see the module docstring)."""
        migrated = self.env.get("PVE_MIGRATED_FROM", "")
        if migrated:
            return self.migration_target(migrated)
        try:
            guest = read_guest(self.settings.config_dir, self.node, self.vmid)
        except GuestConfigError as exc:
            return self.member.internal_error(str(exc), guestconf.QEMU)
        gates = self.gates_of(guest)
        if not gates:
            return Outcome(EXIT_ALLOW, f"startgate: {guest.label} may start: not a member of any gate")
        if guest.lock:
            return self.member.allow(guest.type, f"its config is locked ({guest.lock})", gates)
        return self.member.check(guest, gates)

    def migration_target(self, source: str) -> Outcome:
        """Allow a live-migration target; report it if the guest (config still on `source`) is a member."""
        reason = f"live-migration target (from {source[:63]})"
        safe = source not in {".", ".."} and all(c.isalnum() or c in "-_." for c in source)
        try:
            guest = read_guest(self.settings.config_dir, source, self.vmid) if safe else None
        except GuestConfigError:
            guest = None
        if guest is None:
            return self.member.allow(guestconf.QEMU, reason, ())  # membership unknown: report it, to be safe
        gates = self.gates_of(guest)
        if not gates:
            return Outcome(EXIT_ALLOW, f"startgate: {guest.label} may start: {reason}")
        return self.member.allow(guest.type, reason, gates)
