"""The durable spool: bus messages that could not be published wait here for the node agent.

One message per file, named `<time_ns:020d>-<pid>-<seq>-<kind>-<key>.json` so that sorting the
names gives the order they were made in (kind and key let the hook find its last held record
without opening every file). Each file is written atomically: a hidden temporary file is written
and fsynced, renamed to its final name, and the directory is fsynced, so a crash leaves either the
whole message or nothing.

Order across writers: a drainer (the agent, or a hook that finds the broker up and old files
waiting) holds an exclusive `flock` on `<spool>/.lock` while it forwards files oldest first, and
deletes each file only after the broker acknowledged it. A hook that cannot take the lock at
once spools its own messages behind the others instead of publishing past them, so retained
records from this node never reach the broker out of order. A file may be forwarded twice (the
broker acked, the delete did not happen): receivers drop duplicates by `event_id`.

A file that does not parse is renamed to `<name>.bad` and reported; it never blocks the queue.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import NamedTuple

from startgate.errors import SpoolError

LOCK_NAME = ".lock"
_SUFFIX = ".json"


class Spooled(NamedTuple):
    """One spooled message: its file, topic, payload and retain flag."""

    path: Path
    topic: str
    payload: bytes
    retain: bool


class Spool:
    """A spool directory (created 0700 on first write)."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self._seq = 0

    # -- writing -----------------------------------------------------------------------------
    def put(self, topic: str, payload: bytes, retain: bool, kind: str = "msg", key: str = "") -> Path:
        """Store one message durably; SpoolError when the directory cannot be written."""
        self._seq += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:04d}-{kind}-{key or '0'}{_SUFFIX}"
        final = self.dir / name
        tmp = self.dir / f".tmp-{name}"
        record = {"topic": topic, "payload": payload.decode("utf-8"), "retain": retain}
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, json.dumps(record, separators=(",", ":")).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            tmp.rename(final)
            self._sync_dir()
        except (OSError, UnicodeDecodeError) as exc:
            raise SpoolError(f"cannot write to spool {self.dir}: {exc}") from None
        return final

    def _sync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- reading -----------------------------------------------------------------------------
    def names(self) -> list[str]:
        """The spooled file names, oldest first (an absent directory is an empty spool)."""
        try:
            with os.scandir(self.dir) as it:
                return sorted(e.name for e in it if e.name.endswith(_SUFFIX) and not e.name.startswith("."))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise SpoolError(f"cannot list spool {self.dir}: {exc}") from None

    def count(self) -> int:
        """How many messages wait."""
        return len(self.names())

    def read(self, name: str) -> Spooled | None:
        """One spooled message; None (after renaming it to `.bad`) if the file is damaged."""
        path = self.dir / name
        try:
            data = json.loads(path.read_bytes())
            return Spooled(path, str(data["topic"]), str(data["payload"]).encode(), bool(data["retain"]))
        except FileNotFoundError:
            return None  # forwarded and removed by another drainer meanwhile
        except (OSError, ValueError, KeyError, TypeError):
            self.quarantine(path)
            return None

    def pending(self, limit: int | None = None) -> list[Spooled]:
        """The spooled messages, oldest first (damaged files are set aside)."""
        out: list[Spooled] = []
        for name in self.names():
            if limit is not None and len(out) >= limit:
                break
            item = self.read(name)
            if item is not None:
                out.append(item)
        return out

    def latest(self, kind: str, key: str) -> Spooled | None:
        """The newest spooled message of this kind and key (e.g. the last held record of a VMID)."""
        tail = f"-{kind}-{key}{_SUFFIX}"
        for name in reversed(self.names()):
            if name.endswith(tail):
                item = self.read(name)
                if item is not None:
                    return item
        return None

    # -- removing ----------------------------------------------------------------------------
    def remove(self, item: Spooled) -> None:
        """Delete a message the broker acknowledged."""
        try:
            item.path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise SpoolError(f"cannot remove {item.path}: {exc}") from None

    def quarantine(self, path: Path, suffix: str = ".bad") -> Path | None:
        """Set a file aside as `<name><suffix>` (damaged: .bad, refused by the broker: .rejected)."""
        bad = path.with_name(path.name + suffix)
        try:
            path.rename(bad)
        except OSError:
            return None
        return bad

    def bad_files(self) -> list[str]:
        """Files set aside as damaged."""
        try:
            return sorted(p.name for p in self.dir.glob("*.bad"))
        except OSError:
            return []

    # -- drain lock --------------------------------------------------------------------------
    def lock(self, wait: bool) -> SpoolLock | None:
        """Take the drain lock; with `wait=False`, None when another drainer holds it."""
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise SpoolError(f"cannot lock spool {self.dir}: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError as exc:
            os.close(fd)
            raise SpoolError(f"cannot lock spool {self.dir}: {exc}") from None
        return SpoolLock(fd)


class SpoolLock:
    """A held drain lock; release it with `release()` or a `with` block."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def release(self) -> None:
        """Release the lock."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> SpoolLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
