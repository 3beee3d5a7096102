"""HA-managed, as pve-ha-manager decides it from resources.cfg (and the disarm mode)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from startgate.hooks.ha import ha_managed, is_managed, resource_states

FIXTURE = Path(__file__).parent / "fixtures" / "pve" / "ha" / "resources.cfg"


def test_resource_states_from_a_real_shaped_file() -> None:
    """Sections, indented properties, default state `started`."""
    assert resource_states(FIXTURE.read_text()) == {
        "vm:100": "started",
        "vm:101": "started",
        "ct:201": "ignored",
        "vm:105": "disabled",
    }


def test_managed_unless_ignored_or_absent() -> None:
    """`ignored` and unlisted guests are not HA-managed; `disabled` still is (HA owns its state)."""
    text = FIXTURE.read_text()
    assert is_managed(101, text)
    assert is_managed(105, text)
    assert not is_managed(201, text)
    assert not is_managed(102, text)
    assert is_managed(101, "vm: 101\n\tstate enabled\n")


def test_disarmed_in_ignore_mode_means_unmanaged() -> None:
    """PVE 9's `disarm` in ignore mode lets guests be managed directly."""
    text = FIXTURE.read_text()
    assert not is_managed(101, text, json.dumps({"disarm": {"mode": "ignore"}}))
    assert is_managed(101, text, json.dumps({"disarm": {"mode": "freeze"}}))
    assert is_managed(101, text, "{garbled")


def test_reads_the_files_under_config_dir(tmp_path: Path) -> None:
    """ha_managed reads <config_dir>/ha/; no file at all means not managed."""
    assert not ha_managed(str(tmp_path), 101)
    (tmp_path / "ha").mkdir()
    shutil.copy(FIXTURE, tmp_path / "ha" / "resources.cfg")
    assert ha_managed(str(tmp_path), 101)
