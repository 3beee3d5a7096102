"""The outcome of one doctor check: ok, warn or fail, what was found, and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Finding:
    """One check's result; `fix` is one line an admin can act on (empty when ok)."""

    check: str
    status: Status
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        """The finding as a JSON-ready mapping."""
        return {"check": self.check, "status": self.status, "message": self.message, "fix": self.fix}


def ok(check: str, message: str) -> Finding:
    """A check that passed."""
    return Finding(check, "ok", message)


def warn(check: str, message: str, fix: str) -> Finding:
    """Something that works but deserves attention."""
    return Finding(check, "warn", message, fix)


def fail(check: str, message: str, fix: str) -> Finding:
    """Something that will stop startgate (or the cluster) from doing its job."""
    return Finding(check, "fail", message, fix)


def worst(findings: list[Finding]) -> Status:
    """The worst status among `findings` (ok when there are none)."""
    statuses = {f.status for f in findings}
    return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "ok"
