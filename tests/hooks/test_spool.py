"""The durable spool: atomic files, oldest first, damaged files set aside, one drainer at a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from startgate.errors import SpoolError
from startgate.hooks.spool import Spool


def test_messages_come_back_in_order(tmp_path: Path) -> None:
    """Messages are read oldest first, byte for byte, and no temporary file stays behind."""
    spool = Spool(tmp_path / "spool")
    for i in range(30):
        spool.put(f"t/{i}", f"payload {i} é".encode(), retain=i % 2 == 0, kind="held", key=str(100 + i))
    items = spool.pending()
    assert [i.topic for i in items] == [f"t/{i}" for i in range(30)]
    assert items[3].payload == "payload 3 é".encode()
    assert [i.retain for i in items[:2]] == [True, False]
    assert sorted(p.name for p in (tmp_path / "spool").iterdir() if p.name.startswith(".tmp")) == []
    assert oct((tmp_path / "spool").stat().st_mode & 0o777) == "0o700"
    assert spool.pending(limit=5)[-1].topic == "t/4"


def test_two_writers_keep_their_order(tmp_path: Path) -> None:
    """Two Spool objects on one directory (two processes) interleave by time."""
    a, b = Spool(tmp_path), Spool(tmp_path)
    a.put("a/1", b"1", False)
    b.put("b/1", b"1", False)
    a.put("a/2", b"1", False)
    assert [i.topic for i in a.pending()] == ["a/1", "b/1", "a/2"]


def test_latest_by_kind_and_key(tmp_path: Path) -> None:
    """latest() finds the newest record of one kind and key."""
    spool = Spool(tmp_path)
    spool.put("held/101", b"old", True, kind="held", key="101")
    spool.put("held/102", b"other", True, kind="held", key="102")
    spool.put("held/101", b"new", True, kind="held", key="101")
    found = spool.latest("held", "101")
    assert found is not None
    assert found.payload == b"new"
    assert spool.latest("held", "103") is None


def test_remove_and_damaged_files(tmp_path: Path) -> None:
    """A removed file is gone; a damaged file is renamed .bad and skipped, never blocking the rest."""
    spool = Spool(tmp_path)
    first = spool.put("a", b"1", False)
    spool.put("b", b"2", False)
    first.write_text("{truncated")
    items = spool.pending()
    assert [i.topic for i in items] == ["b"]
    assert spool.bad_files() == [first.name + ".bad"]
    spool.remove(items[0])
    spool.remove(items[0])  # twice is fine (another drainer may have done it)
    assert spool.count() == 0


def test_absent_directory_is_an_empty_spool(tmp_path: Path) -> None:
    """Reading a spool that was never written is not an error."""
    assert Spool(tmp_path / "never").pending() == []


def test_unwritable_spool_raises_spool_error(tmp_path: Path) -> None:
    """A spool path under a file cannot be written: SpoolError names it."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SpoolError, match="cannot write to spool"):
        Spool(blocker / "spool").put("a", b"1", False)


def test_one_drainer_at_a_time(tmp_path: Path) -> None:
    """While one holds the drain lock, a non-waiting try gets None; after release it succeeds."""
    spool = Spool(tmp_path)
    held = spool.lock(wait=True)
    assert held is not None
    assert Spool(tmp_path).lock(wait=False) is None
    held.release()
    again = Spool(tmp_path).lock(wait=False)
    assert again is not None
    again.release()
