"""Fuzzing the inputs nobody controls: real-shaped guest configs and the CLI's arguments."""

from __future__ import annotations

import contextlib
import re

from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from startgate.cli import app
from startgate.core import guestconf, membership
from startgate.errors import GuestConfigError

RULE = membership.GateRule(
    "linstor", 100, frozenset({"drbdstorage"}), frozenset({"needs-linstor"}), frozenset({555})
)
STORAGES = st.sampled_from(["drbdstorage", "local-lvm", "local", "ceph", "DRBD", "drbd storage", "ä"])
KEYS = st.sampled_from(
    ["scsi0", "virtio1", "sata2", "ide3", "efidisk0", "tpmstate0", "unused0", "rootfs", "mp0", "mp255",
     "scsi31", "scsi32", "tags", "lock", "onboot", "startup", "name", "hostname", "hookscript", "x-y", ""]
)  # fmt: skip
SPACE = st.sampled_from(["", " ", "  ", "\t", " \t "])
OPTIONS = st.sampled_from(["", ",size=32G", ",,", "=x"])
VALUES = st.one_of(
    st.builds(lambda s, n, o: f"{s}:vm-{n}-disk-0{o}", STORAGES, st.integers(0, 10**10), OPTIONS),
    st.sampled_from(["order=1,up=30", "order=-1", "up=x", "backup", "1", "0", "a;b,c d", "none,media=cdrom"]),
    st.text(max_size=40),
    st.text(min_size=5000, max_size=20000, alphabet="ab:,=;"),
)  # fmt: skip
LINE = st.one_of(
    st.builds(lambda k, s1, v, s2: f"{k}:{s1}{v}{s2}", KEYS, SPACE, VALUES, SPACE),
    st.sampled_from(
        ["[snap1]", "[PENDING]", "[special:cloudinit]", "# comment", "#qmdump#map:x", "", "[", "]"]
    ),
    st.text(max_size=30),
)


@given(st.lists(LINE, max_size=25), st.sampled_from(["qemu", "lxc"]))
def test_real_shaped_guest_configs_never_crash_the_parser(lines: list[str], guest_type: str) -> None:
    """Volumes, snapshots, pending, odd spacing, unicode, 20 kB lines: a GuestConfig or GuestConfigError."""
    text = "\n".join(lines)
    with contextlib.suppress(GuestConfigError):
        guest = guestconf.parse(text, 101, guest_type, "fuzz.conf")
        found = membership.memberships(guest, [RULE])
        assert all(m.gate == "linstor" for m in found)
        assert all(v.storage is None or "/" not in v.storage for v in guest.volumes)


@given(st.lists(LINE, max_size=10))
def test_snapshot_sections_never_make_a_guest_a_member(lines: list[str]) -> None:
    """Whatever a snapshot section holds, it does not change membership of the current config."""
    current = "scsi0: local-lvm:vm-101-disk-0,size=8G\n"
    snapshot = "\n[snap1]\n" + "\n".join(line for line in lines if not line.startswith("["))
    with contextlib.suppress(GuestConfigError):
        guest = guestconf.parse(current + snapshot, 101, "qemu", "fuzz.conf")
        assert membership.memberships(guest, [RULE]) == ()


COMMANDS = st.sampled_from(
    ["why", "release", "drop", "queue", "status", "attach", "detach", "hook", "config", "events", "doctor"]
)
ARGS = st.lists(
    st.one_of(
        st.integers(-10, 10**12).map(str),
        st.sampled_from(
            ["--all", "--force", "--yes", "--json", "--dry-run", "--replace", "--", "-x", "--timeout", "0"]
        ),
        st.text(max_size=12).filter(lambda s: "\x00" not in s),
    ),
    max_size=4,
)


@given(COMMANDS, ARGS)
def test_no_cli_argument_crashes_a_command(command: str, args: list[str]) -> None:
    """Any arguments give an exit code of 0, 1 or 2 and no traceback (with no config, nothing is reached)."""
    result = CliRunner().invoke(
        app, ["--config", "/nonexistent/startgate.toml", command, *args], env={"STARTGATE_CONFIG": ""}
    )
    assert result.exit_code in (0, 1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert not re.search(r"Traceback \(most recent call last\)", result.output)
