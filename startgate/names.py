"""Validation of the names that end up in topics, paths and API URLs: VMIDs, nodes, gates, clusters.

One place decides what a safe name is, so nothing read from a message, a guest config or a task
log can inject MQTT wildcards (`+`, `#`), a topic level (`/`), NUL, or a path component.
"""

from __future__ import annotations

import re

# Proxmox VMIDs: pve-common `pve-vmid` is 100..999999999.
VMID_MIN = 100
VMID_MAX = 999_999_999

# Node names are hostnames (pve-cluster); gate and cluster names follow the same, stricter-than-MQTT rule.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def check_name(value: str, what: str) -> str:
    """Return `value` if it is a safe name (letters, digits, `_.-`, max 63), else raise ValueError."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or value in {".", ".."}:
        raise ValueError(f"{what} {value!r} is not allowed: use letters, digits, '_', '.', '-' (max 63)")
    return value


def check_vmid(value: object, what: str = "VMID") -> int:
    """Return `value` as a VMID if it is an int (or decimal string) in 100..999999999, else ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{what} {value!r} is not a number")  # noqa: TRY004 - callers catch ValueError for all bad input
    if isinstance(value, str):
        if not value.isascii() or not value.isdecimal() or len(value) > 9:
            raise ValueError(f"{what} {value!r} is not a number in {VMID_MIN}..{VMID_MAX}")
        value = int(value)
    if not isinstance(value, int) or not VMID_MIN <= value <= VMID_MAX:
        raise ValueError(f"{what} {value!r} is out of range {VMID_MIN}..{VMID_MAX}")
    return value
