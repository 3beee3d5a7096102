"""Light runtime stand-ins for `typing`, for the modules on the hookscript's hot path.

`import typing` costs ~15 ms on a small node (it pulls in re, functools, collections and
contextlib), a quarter of a non-member hook run's 60 ms budget. Hot-path modules therefore write

    TYPE_CHECKING = False
    if TYPE_CHECKING:
        from typing import NamedTuple
    else:
        from startgate._lite import NamedTuple

mypy treats any `TYPE_CHECKING` name as true, so it checks the real `typing.NamedTuple`; at run
time the class statement builds a `collections.namedtuple` with the same fields, defaults,
methods, properties and docstring (`collections` costs ~3 ms). Stdlib only.
"""

from __future__ import annotations

from collections import namedtuple

_NOT_COPIED = {"__module__", "__qualname__", "__annotations__", "__dict__", "__weakref__", "__slots__"}


class _NamedTupleMeta(type):
    """Builds a collections.namedtuple from a `class X(NamedTuple):` statement."""

    def __new__(mcs, name: str, bases: tuple[type, ...], ns: dict[str, object]) -> type:
        if not bases:  # the NamedTuple base class itself
            return super().__new__(mcs, name, bases, ns)
        annotations = ns.get("__annotations__", {})
        assert isinstance(annotations, dict)  # a class body's annotations are a dict
        fields = list(annotations)
        defaults = []
        for field in fields:
            if field in ns:
                defaults.append(ns[field])
            elif defaults:
                raise TypeError(f"{name}: field {field!r} without a default follows one with a default")
        make = namedtuple  # through a name: mypy only understands namedtuple() with literal arguments
        cls: type = make(name, fields, defaults=tuple(defaults), module=str(ns.get("__module__")))
        for key, value in ns.items():
            if key not in _NOT_COPIED and key not in fields:
                setattr(cls, key, value)
        cls.__qualname__ = str(ns.get("__qualname__", name))
        cls.__annotations__ = annotations
        return cls


class NamedTuple(metaclass=_NamedTupleMeta):
    """Base class for NamedTuple classes on the hot path (see the module docstring)."""
