"""The cluster-wide leader lock, with pmxcfs semantics (as pve-ha-manager elects its CRM master).

proxmox/pve-ha-manager src/PVE/HA/Env/PVE2.pm `get_pve_lock`, proxmox/pve-cluster src/README
"File Locking": `mkdir <lock_dir>` is atomic cluster-wide and wins; the holder refreshes the
directory's mtime; the others may take it once it has been unchanged for the lock timeout (120 s
in pmxcfs), measured by each node's own clock from when it first saw the current state, so clock
skew does not matter; a clean exit removes it (rmdir).

On pmxcfs only the node that created a lock can refresh it; on a plain file system (tests, the
simulator) there is no such guard, so the holder also checks that the directory is still the one
it left (same inode and mtime, which only the holder changes): if a peer replaced it, the holder
has lost. A restarted process on the
holding node reclaims its own lock at once when the directory is still the one recorded in its
state dir (pmxcfs lets the same node refresh it); otherwise it waits like everyone else.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Seen:
    ident: tuple[int, int]  # (inode, mtime in ns): what "unchanged" means
    since: float  # our clock when we first saw it


class LeaderLock:
    """One process's view of the lock: `tick()` acquires, refreshes or notices a loss."""

    def __init__(
        self,
        path: Path,
        timeout_s: float,
        *,
        owner_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self.owner_file = owner_file
        self._clock = clock
        self._wall = wall
        self._held: tuple[int, int] | None = None  # (inode, mtime ns) as we last left the directory
        self._refreshed = 0.0
        self._seen: _Seen | None = None
        self.problem = ""

    @property
    def held(self) -> bool:
        """True while this process believes it holds the lock."""
        return self._held is not None

    @property
    def refresh_every(self) -> float:
        """How often the holder refreshes (a quarter of the timeout, as a holder must never lapse)."""
        return max(0.05, self.timeout_s / 4)

    def tick(self) -> bool:
        """Acquire or refresh now; True while held. Never raises for file-system trouble."""
        try:
            return self._refresh() if self.held else self._acquire()
        except OSError as exc:
            self.problem = f"{self.path}: {exc.strerror or exc}"
            if self.held and self._clock() - self._refreshed >= self.timeout_s * 0.75:
                log.warning("cannot refresh the leader lock for too long: %s", self.problem)
                self._lose()
            return self.held

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    def _refresh(self) -> bool:
        ident = self._stat()
        if ident is None or ident != self._held:
            log.warning("the leader lock %s was taken over or removed", self.path)
            self._lose()
            return False
        now = self._wall()
        os.utime(self.path, (now, now))
        self._held = self._stat()
        self._refreshed = self._clock()
        self.problem = ""
        self._record()
        return True

    def _take(self) -> bool:
        try:
            self.path.mkdir(0o700)
        except FileExistsError:
            return False
        self._held = self._stat()
        self._refreshed = self._clock()
        self._seen = None
        self._record()
        log.info("acquired the leader lock %s", self.path)
        return True

    def _acquire(self) -> bool:  # noqa: PLR0911 - each way out of the takeover ladder is its own case
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._take():
            return True
        ident = self._stat()
        if ident is None:
            return self._take()
        if self._mine(ident):
            self._held = ident
            log.info("reclaimed our own leader lock %s after a restart", self.path)
            return self._refresh()
        now = self._clock()
        if self._seen is None or self._seen.ident != ident:
            self._seen = _Seen(ident, now)
            return False
        if now - self._seen.since < self.timeout_s:
            return False
        if self._stat() != ident:  # a peer took it this very moment
            return False
        log.warning(
            "the leader lock %s is stale (unchanged for %.1fs): taking it", self.path, now - self._seen.since
        )
        try:
            self.path.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:  # not empty, or the file system refuses: leave it
            self.problem = f"cannot remove the stale lock {self.path}: {exc.strerror}"
            return False
        return self._take()

    def _mine(self, ident: tuple[int, int]) -> bool:
        if self.owner_file is None:
            return False
        try:
            data = json.loads(self.owner_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return (
            isinstance(data, dict) and data.get("lock") == str(self.path) and data.get("ident") == list(ident)
        )

    def _record(self) -> None:
        if self.owner_file is None:
            return
        text = json.dumps({"lock": str(self.path), "ident": list(self._held or ())})
        try:
            if self.owner_file.exists() and self.owner_file.read_text(encoding="utf-8") == text:
                return
            self.owner_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.owner_file.with_name(self.owner_file.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(self.owner_file)
        except OSError as exc:
            log.debug("cannot record the lock owner in %s: %s", self.owner_file, exc)

    def _lose(self) -> None:
        self._held = None
        self._seen = None
        if self.owner_file is not None:
            self.owner_file.unlink(missing_ok=True)

    def release(self) -> None:
        """Give the lock up (clean exit): rmdir if it is still ours."""
        if not self.held:
            return
        ident = self._stat()
        if ident is not None and ident == self._held:
            try:
                self.path.rmdir()
                log.info("released the leader lock %s", self.path)
            except OSError as exc:
                log.warning("cannot remove the leader lock %s: %s", self.path, exc.strerror)
        self._lose()
