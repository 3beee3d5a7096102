"""An absolute deadline on an injected monotonic clock (stdlib only; on the hookscript's hot path)."""

from __future__ import annotations

import time

TYPE_CHECKING = (
    False  # not typing.TYPE_CHECKING: importing typing costs the hook ~15 ms (see startgate._lite)
)
if TYPE_CHECKING:
    from collections.abc import Callable


class Deadline:
    """An absolute point in time (monotonic) by which an operation must end."""

    __slots__ = ("at", "clock")

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.at = clock() + seconds

    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self.at - self.clock())

    def expired(self) -> bool:
        """True once the deadline has passed."""
        return self.clock() >= self.at

    def within(self, seconds: float) -> Deadline:
        """A deadline `seconds` from now, but never later than this one."""
        sub = Deadline(0.0, self.clock)
        sub.at = min(self.at, self.clock() + max(0.0, seconds))
        return sub
