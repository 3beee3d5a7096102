"""The pmxcfs-style leader lock on a plain directory, with an injected clock."""

from __future__ import annotations

from pathlib import Path

from startgate.coordinator.lock import LeaderLock


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _lock(tmp_path: Path, clock: Clock, name: str = "a", timeout: float = 10.0) -> LeaderLock:
    return LeaderLock(
        tmp_path / "lock" / "startgate", timeout, owner_file=tmp_path / name / "owner", clock=clock
    )


def test_mkdir_wins_and_the_other_waits(tmp_path: Path) -> None:
    """The first to mkdir holds the lock; a second contender does not, while the holder refreshes."""
    clock = Clock()
    a, b = _lock(tmp_path, clock, "a"), _lock(tmp_path, clock, "b")
    assert a.tick()
    assert not b.tick()
    for _ in range(10):
        clock.t += 3.0
        assert a.tick()
        assert not b.tick()
    assert a.held
    assert not b.held


def test_a_stale_lock_is_taken_after_the_timeout_from_first_sight(tmp_path: Path) -> None:
    """A holder that stops refreshing loses the lock once it stayed unchanged for the timeout."""
    clock = Clock()
    a, b = _lock(tmp_path, clock, "a"), _lock(tmp_path, clock, "b")
    assert a.tick()
    assert not b.tick()  # first sight
    clock.t += 9.0
    assert not b.tick()
    clock.t += 1.5
    assert b.tick()
    assert not a.tick()  # the former holder notices the directory is no longer its own
    assert not a.held


def test_clean_release_lets_the_next_take_it_at_once(tmp_path: Path) -> None:
    """rmdir on a clean exit: a contender takes the lock on its next try, no timeout."""
    clock = Clock()
    a, b = _lock(tmp_path, clock, "a"), _lock(tmp_path, clock, "b")
    assert a.tick()
    assert not b.tick()
    a.release()
    assert not (tmp_path / "lock" / "startgate").exists()
    assert b.tick()


def test_a_restarted_holder_reclaims_its_own_lock(tmp_path: Path) -> None:
    """After SIGKILL, the same node's new process reclaims the lock recorded in its state dir."""
    clock = Clock()
    assert _lock(tmp_path, clock, "a").tick()
    again = _lock(tmp_path, clock, "a")
    assert again.tick()
    other = _lock(tmp_path, clock, "b")
    assert not other.tick()


def test_file_system_trouble_is_reported_not_raised(tmp_path: Path) -> None:
    """A lock dir that cannot be created gives `problem`, never an exception."""
    blocker = tmp_path / "lock"
    blocker.write_text("a file where the parent directory should be")
    lock = LeaderLock(blocker / "startgate", 5.0, clock=Clock())
    assert not lock.tick()
    assert lock.problem
    assert blocker.is_file()
