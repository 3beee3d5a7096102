"""`evolve` is `dataclasses.replace` for the core's values, only cheaper."""

from __future__ import annotations

import dataclasses

import pytest

from startgate.core.evolve import evolve
from startgate.core.model import GateSpec, GuestInfo, HeldEntry, Settings, initial_state


def test_evolve_equals_replace_on_the_core_values() -> None:
    """A state, a guest and a held entry come out as `dataclasses.replace` makes them."""
    state = initial_state(Settings(node="pve1", gates=(GateSpec("g"),)), "x")
    guest = GuestInfo(vmid=100, node="pve1", type="qemu")
    entry = HeldEntry(vmid=100, node="pve1", type="qemu", gates=("g",), first_held=1.0, last_held=2.0)
    assert evolve(state, seq=7, leader=True) == dataclasses.replace(state, seq=7, leader=True)
    assert evolve(guest, status="stopped", gates=("g",)) == dataclasses.replace(
        guest, status="stopped", gates=("g",)
    )
    new = evolve(entry, state="releasing", attempts=3)
    assert new == dataclasses.replace(entry, state="releasing", attempts=3)
    assert entry.state == "held"  # the original is untouched
    assert type(new) is HeldEntry


def test_evolve_refuses_an_unknown_field() -> None:
    """A misspelt field is a TypeError, as with `dataclasses.replace`."""
    with pytest.raises(TypeError, match="nope"):
        evolve(GuestInfo(vmid=100, node="pve1", type="qemu"), nope=1)


def test_evolve_runs_post_init_where_a_class_has_one() -> None:
    """A dataclass with `__post_init__` is copied through its `__init__`, so the check still runs."""

    @dataclasses.dataclass(frozen=True)
    class Checked:
        n: int

        def __post_init__(self) -> None:
            if self.n < 0:
                raise ValueError("negative")

    assert evolve(Checked(1), n=2) == Checked(2)
    with pytest.raises(ValueError, match="negative"):
        evolve(Checked(1), n=-1)
