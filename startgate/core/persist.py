"""The durable part of the state as JSON-ready data, and back (the service writes it atomically).

Kept: the held queue, tickets, tombstones, what is known of guests and nodes. Not kept: gate
health (re-established by probing, never trusted from disk), leadership (re-acquired) and timers.
A restored leader doubts every entry until an observation says its guest is still stopped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from startgate.core import lifecycle
from startgate.core.model import (
    GuestInfo,
    HeldEntry,
    NodeInfo,
    NodePacing,
    Settings,
    State,
    TicketRec,
    Tombstone,
    initial_state,
)
from startgate.core.pmap import PMap

FORMAT = 1
T = TypeVar("T")


class StateFileError(ValueError):
    """The saved state does not have the expected shape; the message names the culprit."""


def _plain(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        out[f.name] = list(value) if isinstance(value, tuple | frozenset) else value
    return out


def to_dict(state: State) -> dict[str, Any]:
    """The durable part of `state` as JSON-ready data."""
    return {
        "format": FORMAT,
        "node": state.settings.node,
        "held": [_plain(e) for e in state.held.values()],
        "tickets": [_plain(t) for t in state.tickets.values()],
        "tombstones": [{"vmid": v, **_plain(t)} for v, t in state.tombstones.items()],
        "guests": [_plain(g) for g in state.guests.values()],
        "nodes": {name: _plain(n) for name, n in state.nodes.items()},
        "pacing": {name: _plain(p) for name, p in state.pacing.items()},
    }


def _fits(value: Any, hint: Any) -> bool:  # noqa: PLR0911 - one return per kind of hint reads best
    origin = get_origin(hint)
    if hint is Any:
        return True
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is Literal:
        return value in get_args(hint)
    if origin in (Union, UnionType):
        return any(_fits(value, h) for h in get_args(hint))
    if origin is tuple:
        return isinstance(value, tuple) and all(_fits(v, get_args(hint)[0]) for v in value)
    if hint is type(None):
        return value is None
    return isinstance(value, hint)


def _build(cls: type[T], data: Any, where: str) -> T:
    if not isinstance(data, Mapping):
        raise StateFileError(f"{where}: expected an object, got {type(data).__name__}")
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in hints:
            raise StateFileError(f"{where}.{key}: unknown field")
        v = tuple(value) if isinstance(value, list) else value
        if not _fits(v, hints[key]):
            raise StateFileError(f"{where}.{key}: {value!r} is not a valid {hints[key]}")
        kwargs[key] = v
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise StateFileError(f"{where}: {exc}") from None


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise StateFileError(f"{key}: expected a list")
    return value


def _dict(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise StateFileError(f"{key}: expected an object")
    return value


def from_dict(data: Any, settings: Settings, instance: str) -> State:
    """A follower state holding what `to_dict` saved; StateFileError when the data is malformed."""
    if not isinstance(data, Mapping):
        raise StateFileError("the state file does not hold a JSON object")
    if data.get("format") != FORMAT:
        raise StateFileError(f"format: expected {FORMAT}, got {data.get('format')!r}")
    held = [_build(HeldEntry, d, f"held[{i}]") for i, d in enumerate(_list(data, "held"))]
    tickets = [_build(TicketRec, d, f"tickets[{i}]") for i, d in enumerate(_list(data, "tickets"))]
    tombs: list[tuple[int, Tombstone]] = []
    for i, d in enumerate(_list(data, "tombstones")):
        if not isinstance(d, Mapping) or not isinstance(d.get("vmid"), int):
            raise StateFileError(f"tombstones[{i}]: expected an object with an integer vmid")
        rest = {k: v for k, v in d.items() if k != "vmid"}
        tombs.append((d["vmid"], _build(Tombstone, rest, f"tombstones[{i}]")))
    guests = [_build(GuestInfo, d, f"guests[{i}]") for i, d in enumerate(_list(data, "guests"))]
    nodes = {str(k): _build(NodeInfo, v, f"nodes.{k}") for k, v in _dict(data, "nodes").items()}
    pacing = {str(k): _build(NodePacing, v, f"pacing.{k}") for k, v in _dict(data, "pacing").items()}
    state = lifecycle.with_entries(initial_state(settings, instance), held)
    return dataclasses.replace(
        state,
        tickets=PMap((t.vmid, t) for t in tickets),
        tombstones=PMap(tombs),
        guests=PMap((g.vmid, g) for g in guests),
        nodes=nodes,
        pacing=pacing,
    )
