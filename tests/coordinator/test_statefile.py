"""The state file: atomic writes, a round trip, a bad file set aside, coalesced writes."""

from __future__ import annotations

import threading
from pathlib import Path

from startgate.coordinator.statefile import StateFile, StateWriter
from startgate.core import lifecycle
from startgate.core.model import GateSpec, HeldEntry, Settings, initial_state

SETTINGS = Settings(node="pve1", gates=(GateSpec("linstor"),))


def _state(n: int = 1):  # type: ignore[no-untyped-def]
    entries = [
        HeldEntry(vmid=100 + i, node="pve1", type="qemu", gates=("linstor",), first_held=1.0, last_held=2.0)
        for i in range(1, n + 1)
    ]
    return lifecycle.with_entries(initial_state(SETTINGS, "x"), entries)


def test_round_trip(tmp_path: Path) -> None:
    """What is written is read back: the held queue survives a restart."""
    f = StateFile(tmp_path / "state")
    f.write(_state(3))
    back = f.load(SETTINGS, "y")
    assert back is not None
    assert sorted(back.held) == [101, 102, 103]
    assert oct((tmp_path / "state" / "coordinator.json").stat().st_mode & 0o777) == "0o600"


def test_a_bad_file_is_set_aside(tmp_path: Path) -> None:
    """A state file that does not parse is moved to .bad and the coordinator starts empty."""
    f = StateFile(tmp_path)
    f.path.write_text('{"format": 1, "held": [{"vmid": "x"}]}')
    assert f.load(SETTINGS, "y") is None
    assert not f.path.exists()
    assert f.path.with_name("coordinator.json.bad").exists()
    assert StateFile(tmp_path / "none").load(SETTINGS, "y") is None


def test_the_writer_coalesces_a_burst(tmp_path: Path) -> None:
    """A burst of submissions costs a few writes, and the last state is the one on disk."""
    f = StateFile(tmp_path)
    w = StateWriter(f, min_interval_s=0.2).start()
    for n in range(1, 51):
        w.submit(_state(n))
    done = threading.Event()
    done.wait(0.05)
    w.close()
    assert w.writes <= 5
    back = f.load(SETTINGS, "y")
    assert back is not None
    assert len(back.held) == 50


def test_the_writer_writes_the_newest_state_when_its_interval_is_over(tmp_path: Path) -> None:
    """Submissions during the interval after a write are not lost: the newest is written when it ends."""
    f = StateFile(tmp_path)
    w = StateWriter(f, min_interval_s=0.2).start()
    w.submit(_state(1))
    pause = threading.Event()
    for _ in range(100):  # until the first write is done
        if w.writes:
            break
        pause.wait(0.01)
    for n in range(2, 6):
        w.submit(_state(n))
    for _ in range(100):
        if w.writes >= 2:
            break
        pause.wait(0.01)
    try:
        assert w.writes == 2
        back = f.load(SETTINGS, "y")
        assert back is not None
        assert len(back.held) == 5
    finally:
        w.close()
