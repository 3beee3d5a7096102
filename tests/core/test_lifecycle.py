"""The held queue's transition table, and the persistent map under the queue."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from startgate.core.lifecycle import CLEARED, TRANSITIONS, TransitionError, backoff, target
from startgate.core.model import HeldEntry, initial_state
from startgate.core.pmap import PMap
from tests.core.helpers import T0, settings

E = HeldEntry(vmid=101, node="pve1", type="qemu", gates=("linstor",), first_held=T0, last_held=T0)


@pytest.mark.parametrize(
    ("state", "trigger", "to"),
    [
        ("held", "release", "releasing"),
        ("releasing", "progress", "releasing"),
        ("releasing", "retry", "held"),
        ("releasing", "give-up", "failed"),
        ("releasing", "unsure", "held"),
        ("failed", "refused", "held"),
        ("failed", "command", "held"),
        ("held", "started", CLEARED),
        ("releasing", "started", CLEARED),
        ("failed", "dropped", CLEARED),
    ],
)
def test_allowed_transitions(state: str, trigger: str, to: str) -> None:
    """The table sends each (state, trigger) where the queue's design says."""
    e = dataclasses.replace(E, state=state)  # type: ignore[arg-type]  # parametrized literal
    assert target(e, trigger) == to  # type: ignore[arg-type]  # parametrized literal


@pytest.mark.parametrize(
    ("state", "trigger"),
    [
        ("held", "progress"),
        ("held", "retry"),
        ("held", "give-up"),
        ("failed", "release"),
        ("releasing", "release"),
    ],
)
def test_forbidden_transitions_raise(state: str, trigger: str) -> None:
    """Nothing is released twice, and nothing in flight is retried without having been released."""
    e = dataclasses.replace(E, state=state)  # type: ignore[arg-type]  # parametrized literal
    with pytest.raises(TransitionError):
        target(e, trigger)  # type: ignore[arg-type]  # parametrized literal


def test_only_held_entries_can_be_released() -> None:
    """`release` appears in the table for `held` only."""
    assert [s for (s, t) in TRANSITIONS if t == "release"] == ["held"]


@pytest.mark.parametrize(("tries", "seconds"), [(1, 5.0), (2, 10.0), (3, 20.0), (7, 300.0), (30, 300.0)])
def test_backoff_doubles_up_to_its_cap(tries: int, seconds: float) -> None:
    """Retry n waits retry_backoff_s * 2^(n-1), capped at max_backoff_s."""
    assert backoff(initial_state(settings(retry_backoff_s=5.0, max_backoff_s=300.0), "t"), tries) == seconds


@given(st.lists(st.tuples(st.booleans(), st.integers(-50, 50), st.integers())))
def test_pmap_behaves_like_a_dict(ops: list[tuple[bool, int, int]]) -> None:
    """Any sequence of set/remove gives the same content as a dict, and never changes an older map."""
    m: PMap[int, int] = PMap()
    d: dict[int, int] = {}
    snapshots: list[tuple[PMap[int, int], dict[int, int]]] = []
    for is_set, k, v in ops:
        if is_set:
            m, d[k] = m.set(k, v), v
        else:
            m = m.remove(k)
            d.pop(k, None)
        snapshots.append((m, dict(d)))
    for snap, expected in snapshots:
        assert dict(snap.items()) == expected
        assert len(snap) == len(expected)
        assert snap == expected


def test_pmap_update_and_identity() -> None:
    """update() binds many keys at once; setting the same value object returns the same map."""
    v = object()
    m: PMap[int, object] = PMap({1: v})
    assert m.set(1, v) is m
    assert m.remove(2) is m
    m2 = m.update([(2, v), (3, v)])
    assert sorted(m2) == [1, 2, 3]
    assert sorted(m) == [1]
