"""`evolve`: `dataclasses.replace` for the core's frozen, slotted values, at half the cost.

`step` replaces the State, a guest and a held entry on every bus event; `dataclasses.replace`
checks every field's kind and then runs the generated `__init__` with every field as a keyword,
which made it the core's largest cost at thousands of events a second. The values in
startgate.core.model have no `__post_init__` and no init-less fields, so copying the fields
into a new instance is the same thing; any other class goes through `dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")

_FIELDS: dict[type, tuple[str, ...] | None] = {}
_set = object.__setattr__  # a frozen dataclass refuses its own __setattr__, as its __init__ does


def _plain_fields(cls: type) -> tuple[str, ...] | None:
    """The field names of a dataclass that is built by its fields alone, else None."""
    fields = dataclasses.fields(cls)
    if hasattr(cls, "__post_init__") or any(not f.init for f in fields):
        return None
    return tuple(f.name for f in fields)


def evolve(obj: T, /, **changes: Any) -> T:
    """A copy of dataclass instance `obj` with `changes` (as `dataclasses.replace`, same errors)."""
    cls = type(obj)
    try:
        names = _FIELDS[cls]
    except KeyError:
        names = _FIELDS[cls] = _plain_fields(cls)
    if names is None:
        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    new = object.__new__(cls)
    for name in names:
        _set(new, name, changes.pop(name) if name in changes else getattr(obj, name))
    if changes:
        name = next(iter(changes))
        raise TypeError(f"{cls.__name__}.__init__() got an unexpected keyword argument {name!r}")
    return new
