"""The coordinator's durable state: `<state_dir>/coordinator.json`, written atomically.

The core says *that* the durable part changed (Persist); this module decides *when* to write:
a writer thread takes the latest state (immutable, so handing it over is free), at most every
`min_interval_s`, so a burst of a thousand changes costs one write, not a thousand. A file that
does not parse is moved aside (`.bad`) and the coordinator starts empty: the held queue is
rebuilt from the bus and the API, which is the truth anyway.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from startgate.core import persist
from startgate.core.model import Settings, State

log = logging.getLogger(__name__)

FILE_NAME = "coordinator.json"


class StateFile:
    """Reads and atomically writes the state file."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME

    def load(self, settings: Settings, instance: str) -> State | None:
        """The saved state, or None (no file, or a bad one, which is moved aside and logged)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("cannot read the state file %s: %s; starting empty", self.path, exc.strerror)  # noqa: TRY400 - the reason is enough
            return None
        try:
            return persist.from_dict(json.loads(text), settings, instance)
        except (ValueError, persist.StateFileError) as exc:
            bad = self.path.with_name(self.path.name + ".bad")
            why = f"the state file {self.path} is not usable ({exc}); moved to {bad}, starting empty"
            log.error("%s", why)  # noqa: TRY400 - the reason is enough
            with contextlib.suppress(OSError):
                self.path.replace(bad)
            return None

    def write(self, state: State) -> None:
        """Write `state` atomically: a temporary file, fsync, rename, fsync of the directory."""
        data = json.dumps(persist.to_dict(state), separators=(",", ":")).encode()
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


class StateWriter:
    """Writes the newest submitted state from a thread, at most every `min_interval_s`."""

    def __init__(
        self, file: StateFile, min_interval_s: float = 0.25, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.file = file
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: State | None = None
        self._idle = False  # the writer waits for work (not out its interval): a submit must wake it
        self._busy = False
        self._stop = False
        self.writes = 0
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name="state-writer", daemon=True)

    def start(self) -> StateWriter:
        """Start the writer thread."""
        self._thread.start()
        return self

    def submit(self, state: State) -> None:
        """Ask for `state` to be written (replaces any state not yet written)."""
        with self._cond:
            self._pending = state
            # The loop submits after every step; waking a writer that must wait out its interval
            # anyway would cost a thread switch per step. It takes the newest state when it wakes.
            if self._idle:
                self._cond.notify()

    def _write(self, state: State) -> None:
        try:
            self.file.write(state)
            self.writes += 1
        except OSError as exc:
            self.errors += 1
            log.error("cannot write the state file %s: %s", self.file.path, exc)  # noqa: TRY400 - the reason is enough

    def _run(self) -> None:
        last = -self.min_interval_s
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._idle = True
                    self._cond.wait()
                    self._idle = False
                if self._pending is None:
                    return
                wait = last + self.min_interval_s - self._clock()
                if wait > 0 and not self._stop:
                    self._cond.wait(wait)
                    continue
                state, self._pending = self._pending, None
                self._busy = True
            self._write(state)
            last = self._clock()
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def close(self, final: State | None = None, timeout: float = 5.0) -> None:
        """Stop the thread, then write `final` (or whatever is pending) synchronously."""
        with self._cond:
            self._stop = True
            pending, self._pending = self._pending, None
            self._cond.notify_all()
        self._thread.join(timeout)
        state = final if final is not None else pending
        if state is not None:
            self._write(state)
