"""The simulation's scaled clock: every thread of the sim sleeps and reads time through one of these.

One simulated second lasts `scale` real seconds (0.01 by default, so a 15-minute outage plays in
about 9 s; 1.0 plays it in real time). Real subprocesses (hookscripts) and real HTTP clients run in
real time next to it, which is why the sim runs threads in scaled real time instead of jumping
from event to event. `stop()` wakes every sleeper at once, so a closing cluster never waits for a
sleeping loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

DEFAULT_SCALE = 0.01


class SimClock:
    """Scaled time: `elapsed()` simulated seconds since start, `sleep()` in simulated seconds."""

    def __init__(self, scale: float = DEFAULT_SCALE, epoch: float | None = None) -> None:
        if not scale > 0:
            raise ValueError(f"clock scale must be > 0, got {scale!r}")
        self.scale = scale
        self._t0 = time.monotonic()
        # Simulated wall time starts at the real wall time (whole seconds, like UPID start times).
        self.epoch = float(int(time.time())) if epoch is None else epoch
        self._stop = threading.Event()

    def elapsed(self) -> float:
        """Simulated seconds since the clock was made."""
        return (time.monotonic() - self._t0) / self.scale

    def now(self) -> float:
        """Simulated UNIX time (what the simulated Proxmox puts in UPIDs and task lists)."""
        return self.epoch + self.elapsed()

    def real(self, sim_seconds: float) -> float:
        """Real seconds that `sim_seconds` simulated seconds last."""
        return max(0.0, sim_seconds) * self.scale

    def sim(self, real_seconds: float) -> float:
        """Simulated seconds that `real_seconds` real seconds last."""
        return real_seconds / self.scale

    def sleep(self, sim_seconds: float) -> bool:
        """Sleep `sim_seconds` simulated seconds; False if the clock was stopped meanwhile."""
        return not self._stop.wait(self.real(sim_seconds))

    def sleep_until(self, elapsed_target: float) -> bool:
        """Sleep until `elapsed()` reaches `elapsed_target`; False if the clock was stopped."""
        return self.sleep(elapsed_target - self.elapsed())

    def wait_for(self, predicate: Callable[[], bool], timeout: float, poll: float = 0.5) -> bool:
        """Poll `predicate` every `poll` simulated seconds until it holds or `timeout` passes."""
        deadline = self.elapsed() + timeout
        while True:
            if predicate():
                return True
            if self.stopped or self.elapsed() >= deadline:
                return False
            self.sleep(min(poll, max(0.0, deadline - self.elapsed())))

    def rebase(self) -> None:
        """Make `elapsed()` start from 0 again now (an outage's power-on); `now()` stays continuous."""
        self.epoch += self.elapsed()
        self._t0 = time.monotonic()

    def stop(self) -> None:
        """Wake every sleeper; later sleeps return at once."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        """True once `stop()` was called."""
        return self._stop.is_set()
