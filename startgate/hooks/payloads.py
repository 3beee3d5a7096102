"""The hook's bus payloads, built as plain dicts in the wire format of startgate.bus.messages.

The hook cannot import pydantic (too slow for its budget), so it writes the JSON itself; every
builder here is validated against the pydantic models in tests/hooks/test_payloads.py, and the
decoders tolerate anything (a damaged retained record must never break a start).
"""

from __future__ import annotations

import json
import os
from typing import Any

SCHEMA_VERSION = 1
_TEXT_MAX = 2000  # messages.Text
_NAME_MAX = 128  # messages.HeldStart.name


def new_event_id() -> str:
    """A fresh event id: 32 random hex digits (what messages.new_event_id makes, without uuid)."""
    return os.urandom(16).hex()


def encode(payload: dict[str, Any]) -> bytes:
    """Compact JSON, UTF-8."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def decode(payload: bytes | None) -> dict[str, Any] | None:
    """A JSON object of our schema version, or None for anything else (absent, damaged, other version)."""
    if not payload:
        return None
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("v") == SCHEMA_VERSION else None


def _text(value: str) -> str:
    return value if len(value) <= _TEXT_MAX else value[: _TEXT_MAX - 3] + "..."


def guest_event(
    *,
    time: float,
    vmid: int,
    node: str,
    guest_type: str,
    phase: str,
    decision: str | None = None,
    reason: str = "",
    gates: tuple[str, ...] | list[str] = (),
    ha: bool | None = None,
    error: str | None = None,
    ticket: str | None = None,
) -> dict[str, Any]:
    """A `guest/<vmid>/event` payload (messages.GuestEvent)."""
    return {
        "v": SCHEMA_VERSION,
        "event_id": new_event_id(),
        "time": time,
        "vmid": vmid,
        "node": node,
        "type": guest_type,
        "phase": phase,
        "decision": decision,
        "reason": _text(reason),
        "gates": list(gates),
        "ha": ha,
        "error": None if error is None else _text(error),
        "ticket": ticket,
    }


def _number(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return float(value)


def held_start(
    *,
    now: float,
    vmid: int,
    node: str,
    guest_type: str,
    gates: tuple[str, ...] | list[str],
    previous: dict[str, Any] | None,
    ha: bool,
    reason: str,
    name: str | None,
    startup_order: int | None,
) -> dict[str, Any]:
    """A `held/<vmid>` payload (messages.HeldStart), continuing `previous` (first_held, attempts)."""
    first_held, attempts = now, 1
    if previous is not None and previous.get("vmid") == vmid:
        first = _number(previous, "first_held")
        count = previous.get("attempts")
        if first is not None and first <= now:
            first_held = first
            if isinstance(count, int) and not isinstance(count, bool) and count >= 1:
                attempts = count + 1
    return {
        "v": SCHEMA_VERSION,
        "event_id": new_event_id(),
        "vmid": vmid,
        "node": node,
        "type": guest_type,
        "gates": list(gates),
        "first_held": first_held,
        "last_held": now,
        "attempts": attempts,
        "ha": ha,
        "state": "held",
        "reason": _text(reason),
        "source": "hook",
        "name": None if name is None else name[:_NAME_MAX],
        "startup_order": startup_order,
    }
