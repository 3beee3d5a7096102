"""Shared display helpers for the CLI: times, ages, tables, JSON, and the one-line forms of messages.

Times are shown in the local time zone (the admin's clock on the node), ages relative to `now`,
which callers pass in so output is reproducible in tests.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from startgate.bus import messages as m


def clock(epoch: float) -> str:
    """`2025-11-30 12:53:20` in local time."""
    return datetime.fromtimestamp(epoch, tz=UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def age(seconds: float) -> str:
    """A short duration: `4s`, `3m12s`, `2h05m`, `3d04h` (negative ages, from clock skew, show as 0s)."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def since(epoch: float, now: float) -> str:
    """`12:53:20 (4m12s ago)`; the date is added when it is not today."""
    when = datetime.fromtimestamp(epoch, tz=UTC).astimezone()
    today = datetime.fromtimestamp(now, tz=UTC).astimezone().date()
    text = when.strftime("%H:%M:%S" if when.date() == today else "%Y-%m-%d %H:%M:%S")
    return f"{text} ({age(now - epoch)} ago)"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    out = []
    for row in [list(headers), *rows]:
        cells = [c.ljust(widths[i]) if i < len(row) - 1 else c for i, c in enumerate(row)]
        out.append("  ".join(cells).rstrip())
    return out


def dumps(data: Any) -> str:
    """Compact, stable JSON for `--json` output."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def dump(msg: m.Message) -> dict[str, Any]:
    """A bus message as a JSON-ready mapping, exactly as on the wire (it validates against its model)."""
    return msg.model_dump(mode="json")


def guest_label(vmid: int, guest_type: str) -> str:
    """`VM 101` or `CT 101`, as Proxmox names guests."""
    return f"{'CT' if guest_type == 'lxc' else 'VM'} {vmid}"


def held_state(h: m.HeldStart) -> str:
    """`held`, `releasing`, or `failed: <reason>`."""
    if h.state == "failed":
        return f"failed: {h.reason}" if h.reason else "failed"
    return h.state


def vmid_list(vmids: Sequence[int]) -> str:
    """`101, 102 and 103`."""
    items = [str(v) for v in vmids]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
