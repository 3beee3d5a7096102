"""The collector one `step` fills: actions in order, plus what the step touched.

`step` is pure at its boundary; inside, handlers append to one `Out` instead of threading tuples
through every call. It also remembers which held records changed (republished once, at the end)
and which nodes may now release something (the release pass looks only at those).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from startgate.core.actions import Action, Log, Wake


@dataclass(slots=True)
class Out:
    """Actions and bookkeeping of one step (mutable, never outlives it)."""

    now: float
    instance: str
    seq: int
    actions: list[Action] = field(default_factory=list)
    changed: set[int] = field(default_factory=set)  # vmids whose retained held record must be refreshed
    recheck: set[int] = field(default_factory=set)  # vmids that may have become releasable
    nodes: set[str] = field(default_factory=set)  # nodes the release pass must look at
    all_nodes: bool = False
    wake: float | None = None

    def add(self, action: Action) -> None:
        """Append one action."""
        self.actions.append(action)

    def event_id(self) -> str:
        """A fresh, deterministic event id for a published message."""
        self.seq += 1
        return f"{self.instance}.{self.seq:06d}"

    def touch(self, node: str) -> None:
        """Something on `node` changed that may let a held start go."""
        self.nodes.add(node)

    def touch_everything(self) -> None:
        """Something cluster-wide changed (gate health, leadership): look at every node."""
        self.all_nodes = True

    def wake_at(self, at: float) -> None:
        """Ask for a Tick at `at` (the earliest request wins)."""
        if self.wake is None or at < self.wake:
            self.wake = at

    def log(self, level: Literal["debug", "info", "warning", "error"], message: str) -> None:
        """Emit a Log action."""
        self.actions.append(Log(level, message))

    def finish(self) -> tuple[Action, ...]:
        """The actions, with the Wake request last."""
        if self.wake is not None:
            self.actions.append(Wake(self.wake))
        return tuple(self.actions)
