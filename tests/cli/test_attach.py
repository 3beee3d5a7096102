"""`startgate attach` / `detach` with a fake `pvesh` on PATH that records its argv."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from startgate.cli import app
from startgate.commands.testing import fake_pvesh, pvesh_calls
from tests.cli.conftest import write_config, write_tree
from tests.cli.doctor_tree import path_with

VOLID = "local:snippets/startgate-hook"
GUESTS = {
    100: ("pve1", "qemu-server", "name: ctrl\nscsi0: drbdstorage:vm-100-disk-1\n"),  # the gate's own VM
    101: ("pve1", "qemu-server", "name: web1\nscsi0: drbdstorage:vm-101-disk-1\n"),
    102: ("pve2", "lxc", f"hostname: db\nrootfs: local-lvm:vm-102-disk-0\ntags: db\nhookscript: {VOLID}\n"),
    103: ("pve2", "qemu-server", "name: plain\nscsi0: local-lvm:vm-103-disk-0\n"),
    104: (
        "pve2",
        "qemu-server",
        "name: other\nscsi0: drbdstorage:vm-104-disk-1\nhookscript: local:snippets/x.pl\n",
    ),
    105: ("pve1", "lxc", "hostname: ct\nrootfs: drbdstorage:vm-105-disk-1\n"),
}


class Env:
    """A config_dir tree, a config and a fake pvesh."""

    def __init__(self, tmp: Path) -> None:
        self.config_dir = write_tree(tmp / "pve", GUESTS)
        self.cfg = write_config(tmp / "sg.toml", ["mqtt://127.0.0.1:1"], "p", self.config_dir)
        self.log = tmp / "pvesh.log"
        self.bin = tmp / "bin"
        fake_pvesh(self.bin, self.log, self.config_dir)

    def run(self, *args: str, env: dict[str, str] | None = None, path: str | None = None) -> Result:
        """Run startgate with the fake pvesh first on PATH."""
        return CliRunner().invoke(
            app,
            ["--config", str(self.cfg), *args],
            env={"PATH": path if path is not None else path_with(self.bin), **(env or {})},
        )

    def calls(self) -> list[list[str]]:
        """pvesh's recorded argv lists."""
        return pvesh_calls(self.log)

    def hookscript(self, vmid: int) -> str | None:
        """The hookscript line of a guest's config now."""
        node, sub, _ = GUESTS[vmid]
        text = (self.config_dir / "nodes" / node / sub / f"{vmid}.conf").read_text()
        lines = [ln.split(": ", 1)[1] for ln in text.splitlines() if ln.startswith("hookscript:")]
        return lines[0] if lines else None


@pytest.fixture
def env(tmp_path: Path) -> Env:
    """The attach test environment."""
    return Env(tmp_path)


def test_attach_all_sets_the_hook_on_members_without_one_and_refuses_another(env: Env) -> None:
    """--all: 101 and 105 get the hook (right paths per node and type), 102 is unchanged, 104 refused."""
    result = env.run("attach", "--all")
    assert result.exit_code == 1, result.output  # 104 was refused
    assert env.calls() == [
        ["set", "/nodes/pve1/qemu/101/config", "--hookscript", VOLID],
        ["set", "/nodes/pve1/lxc/105/config", "--hookscript", VOLID],
    ]
    out = result.stdout
    assert f"VM 101 (web1) on pve1: changed hookscript none -> {VOLID}" in out
    assert f"CT 102 (db) on pve2: unchanged: already has {VOLID}" in out
    assert "VM 104 (other) on pve2: refused: has another hookscript, local:snippets/x.pl" in out
    assert "100" not in out
    assert "103" not in out
    assert env.hookscript(104) == "local:snippets/x.pl"


def test_attach_replace_overwrites_another_hookscript(env: Env) -> None:
    """--replace sets the hook over another one, and says what it replaced."""
    result = env.run("attach", "--replace", "104")
    assert result.exit_code == 0, result.output
    assert env.calls() == [["set", "/nodes/pve2/qemu/104/config", "--hookscript", VOLID]]
    assert "(replacing local:snippets/x.pl)" in result.stdout
    assert env.hookscript(104) == VOLID


def test_attach_dry_run_runs_nothing(env: Env) -> None:
    """--dry-run prints what would change and never calls pvesh."""
    result = env.run("attach", "--all", "--dry-run", "--replace")
    assert result.exit_code == 0, result.output
    assert env.calls() == []
    assert f"VM 104 (other) on pve2: would change hookscript local:snippets/x.pl -> {VOLID}" in result.stdout
    assert env.hookscript(101) is None


def test_attach_twice_changes_nothing_the_second_time(env: Env) -> None:
    """After a successful attach, a second one finds every member done."""
    assert env.run("attach", "101", "105").exit_code == 0
    result = env.run("attach", "101", "105", "--json")
    assert result.exit_code == 0
    assert [c["action"] for c in json.loads(result.stdout)] == ["unchanged", "unchanged"]
    assert len(env.calls()) == 2


def test_attach_explicit_non_member_notes_it(env: Env) -> None:
    """An explicit VMID that is in no gate is attached, with a note."""
    result = env.run("attach", "103")
    assert result.exit_code == 0
    assert "not a member of any gate" in result.stdout


def test_attach_pvesh_failure_exits_1_with_its_message(env: Env) -> None:
    """pvesh failing for one guest: that line says failed with pvesh's error; the others go on."""
    result = env.run("attach", "101", "105", env={"FAKE_PVESH_FAIL": "101"})
    assert result.exit_code == 1
    assert "VM 101 (web1) on pve1: failed: pvesh failed: 500 unable to set hookscript" in result.stdout
    assert env.hookscript(105) == VOLID


def test_attach_without_pvesh_says_where_to_run(env: Env, tmp_path: Path) -> None:
    """No pvesh on PATH: one clear failure, exit 1."""
    result = env.run("attach", "101", "105", path=str(tmp_path / "empty"))
    assert result.exit_code == 1
    assert result.stdout.count("pvesh not found") == 1


def test_detach_removes_only_startgates_hook(env: Env) -> None:
    """detach --all deletes startgate's hookscript (--delete hookscript) and leaves others alone."""
    result = env.run("detach", "--all")
    assert result.exit_code == 0, result.output
    assert env.calls() == [["set", "/nodes/pve2/lxc/102/config", "--delete", "hookscript"]]
    assert env.hookscript(102) is None
    result = env.run("detach", "104")
    assert result.exit_code == 1
    assert "is not startgate's; left alone" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["attach"], "one of them"),
        (["attach", "--all", "101"], "one of them"),
        (["attach", "42"], "out of range"),
        (["attach", "999"], "unknown VMID 999"),
        (["detach", "x1"], "is not a number"),
    ],
)
def test_attach_bad_input_is_a_usage_error(env: Env, args: list[str], message: str) -> None:
    """No target, both, out of range, unknown: exit 2 and pvesh never runs."""
    result = env.run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert env.calls() == []
