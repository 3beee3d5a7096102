"""`startgate install`: snippet, units, directories, cache; idempotent; dry run; broken environments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from startgate import config
from startgate.cli import app
from startgate.hooks.install import UNITS, install, render_unit
from startgate.hooks.snippet import MARKER, shebang_interpreter, snippet_text, venv_problems

CONTRIB = Path(__file__).parents[2] / "contrib" / "systemd"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[config.Config, Path, dict[str, str]]:
    """A config whose every path lies under tmp_path."""
    pve = tmp_path / "pve"
    pve.mkdir()
    (pve / "storage.cfg").write_text(
        "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup\n\nlvmthin: local-lvm\n\tthinpool data\n"
    )
    path = tmp_path / "startgate.toml"
    path.write_text(
        f"""
cluster = "pve1"
node = "n1"
[proxmox]
config_dir = "{pve}"
[[gates]]
name = "linstor"
check = {{ kind = "tcp", host = "127.0.0.1", port = 3370 }}
storages = ["drbdstorage"]
[hook]
spool_dir = "{tmp_path}/spool"
snippet = "{tmp_path}/snippets/startgate-hook"
[coordinator]
state_dir = "{tmp_path}/state"
"""
    )
    env = {"STARTGATE_CACHE_DIR": str(tmp_path / "cache")}
    return config.load(path), path, env


def test_install_writes_everything_then_is_idempotent(
    setup: tuple[config.Config, Path, dict[str, str]],
) -> None:
    """First run writes and creates; a second run changes nothing and says so."""
    cfg, path, env = setup
    units = path.parent / "units"
    steps = install(cfg, path, env, units_dir=units)
    actions = {Path(s.path).name: s.action for s in steps}
    assert actions["startgate-hook"] == "wrote"
    assert actions["startgate-agent.service"] == "wrote"
    assert actions["spool"] == "created"
    assert actions["hook"] == "created"
    snippet = cfg.hook.snippet
    assert os.access(snippet, os.X_OK)
    assert shebang_interpreter(snippet.read_text()) == sys.executable
    for d in (cfg.hook.spool_dir, cfg.coordinator.state_dir, cfg.coordinator.state_dir / "agent"):
        assert oct(d.stat().st_mode & 0o777) == "0o700"
    agent_unit = (units / "startgate-agent.service").read_text()
    assert f"ExecStart={Path(sys.executable).parent / 'startgate'} agent" in agent_unit
    assert f"Environment=STARTGATE_CONFIG={path}" in agent_unit
    assert "Type=notify" in agent_unit
    warning = [s for s in steps if s.action == "warning"]
    assert len(warning) == 1
    assert "pvesm set local --content iso,vztmpl,backup,snippets" in warning[0].note

    again = install(cfg, path, env, units_dir=units)
    assert {s.action for s in again} == {"unchanged", "warning"}


def test_dry_run_changes_nothing(setup: tuple[config.Config, Path, dict[str, str]]) -> None:
    """--dry-run reports what it would do and writes nothing."""
    cfg, path, env = setup
    steps = install(cfg, path, env, units_dir=path.parent / "units", dry_run=True)
    assert {s.action for s in steps} <= {"would write", "would create", "warning"}
    assert not cfg.hook.snippet.exists()
    assert not (path.parent / "units").exists()
    assert not cfg.hook.spool_dir.exists()


def test_a_foreign_snippet_is_not_overwritten(setup: tuple[config.Config, Path, dict[str, str]]) -> None:
    """A file of the same name not written by startgate is left alone, and that is an error."""
    cfg, path, env = setup
    cfg.hook.snippet.parent.mkdir(parents=True)
    cfg.hook.snippet.write_text("#!/bin/sh\necho mine\n")
    steps = install(cfg, path, env, units_dir=path.parent / "units")
    assert [s.action for s in steps if s.path == str(cfg.hook.snippet)] == ["error"]
    assert cfg.hook.snippet.read_text() == "#!/bin/sh\necho mine\n"


def test_loose_directory_modes_are_fixed(setup: tuple[config.Config, Path, dict[str, str]]) -> None:
    """An existing spool directory readable by others is tightened to 0700."""
    cfg, path, env = setup
    cfg.hook.spool_dir.mkdir(mode=0o755)
    cfg.hook.spool_dir.chmod(0o755)
    steps = install(cfg, path, env, units_dir=path.parent / "units")
    assert [s.action for s in steps if s.path == str(cfg.hook.spool_dir)] == ["fixed mode"]
    assert oct(cfg.hook.spool_dir.stat().st_mode & 0o777) == "0o700"


def test_contrib_units_are_the_rendered_templates() -> None:
    """contrib/systemd holds the units as install renders them for /opt/startgate/venv."""
    for unit in UNITS:
        expected = render_unit(
            unit, Path("/opt/startgate/venv/bin/startgate"), Path("/etc/startgate/startgate.toml")
        )
        assert (CONTRIB / unit).read_text() == expected
    assert "ExecStart=/opt/startgate/venv/bin/startgate coordinator" in (CONTRIB / UNITS[1]).read_text()


def test_broken_virtual_environment_is_detected(tmp_path: Path) -> None:
    """A venv whose python points to a removed interpreter (PVE 8 -> 9: 3.11 -> 3.13) is reported."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python3").symlink_to("/usr/bin/python3.11-gone")
    (venv / "pyvenv.cfg").write_text("home = /usr/nonexistent-bin\nversion = 3.11.2\n")
    problems = venv_problems(str(venv / "bin" / "python3"))
    assert any("/usr/bin/python3.11-gone, which is gone" in p for p in problems)
    assert any("base Python directory /usr/nonexistent-bin is gone" in p for p in problems)
    assert venv_problems() == []


def test_snippet_allows_when_startgate_cannot_be_imported(tmp_path: Path) -> None:
    """A snippet whose package directory is gone allows pre-start with a line instead of failing it."""
    script = tmp_path / "hook"
    script.write_text(snippet_text(parent=tmp_path / "gone", sites=[]))
    script.chmod(0o755)
    assert MARKER in script.read_text()
    proc = subprocess.run([str(script), "101", "pre-start"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert proc.stdout.startswith("startgate: ERROR: allowing start unchecked: cannot load startgate")


def test_cli_install_and_hook(
    setup: tuple[config.Config, Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`startgate install --dry-run` lists steps; `startgate hook` runs the entry with --config."""
    _cfg, path, env = setup
    monkeypatch.setenv("STARTGATE_CACHE_DIR", env["STARTGATE_CACHE_DIR"])
    runner = CliRunner()
    result = runner.invoke(
        app, ["--config", str(path), "install", "--dry-run", "--units", str(path.parent / "u")]
    )
    assert result.exit_code == 0, result.output
    assert "would write" in result.output
    result = runner.invoke(app, ["--config", str(path), "hook", "101", "pre-migrate"])
    assert result.exit_code == 0
    assert "unknown hook phase 'pre-migrate'" in result.output


def _exposure(unit: Path) -> float:
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    line = next(ln for ln in out.splitlines() if "Overall exposure level" in ln)
    return float(line.split(":")[1].split()[0])


@pytest.mark.skipif(
    not Path("/usr/bin/systemd-analyze").exists(), reason="systemd-analyze is not installed here"
)
def test_units_verify_and_are_confined(tmp_path: Path) -> None:
    """Both units pass `systemd-analyze verify`; their exposure score is at most 5 (9.6 unconfined)."""
    for unit in UNITS:
        path = tmp_path / unit
        path.write_text(render_unit(unit, Path(sys.executable), Path("/etc/startgate/startgate.toml")))
        verify = subprocess.run(
            ["systemd-analyze", "verify", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        # Dependencies named in the unit (pve-cluster.service, ...) do not exist on this machine.
        problems = [ln for ln in verify.stderr.splitlines() if unit in ln and "not found" not in ln]
        assert problems == [], problems
        assert _exposure(path) <= 5.0
