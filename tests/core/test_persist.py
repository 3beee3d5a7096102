"""The state file's content: a faithful round trip, and clear errors for malformed data."""

from __future__ import annotations

import json
from typing import Any

import pytest

from startgate.core.events import NodeObserved, StartResult
from startgate.core.persist import StateFileError, from_dict, to_dict
from tests.core.helpers import T0, Run, observed, settings


def busy_run() -> Run:
    """A leader with held, releasing and failed entries, a ticket, a tombstone, guests and nodes."""
    run = Run(settings(start_retries=0))
    run.send(NodeObserved(node="pve1", online=True, boot_time=T0 - 100))
    run.send(observed(103, order=None, up=5.0))
    run.hold(101)
    run.hold(102)
    run.hold(103)
    run.hold(201, "pve2", gates=("other",))
    run.healthy()
    run.send(StartResult(vmid=101, error="boom", status=500))  # failed
    run.send(StartResult(vmid=102, already_running=True))  # cleared: a tombstone
    assert {e.state for e in run.state.held.values()} == {"held", "releasing", "failed"}
    assert list(run.state.tombstones) == [102]
    return run


def test_round_trip_through_json_keeps_every_durable_fact() -> None:
    """to_dict -> JSON -> from_dict gives back the same held queue, tickets, tombstones, guests and nodes."""
    run = busy_run()
    data = json.loads(json.dumps(to_dict(run.state)))
    back = from_dict(data, run.state.settings, "t2")
    s = run.state
    assert (back.held, back.tickets, back.tombstones, back.guests, back.nodes) == (
        s.held,
        s.tickets,
        s.tombstones,
        s.guests,
        s.nodes,
    )
    assert not back.leader
    assert back.gates["linstor"].healthy is False  # health is never trusted from disk


@pytest.mark.parametrize(
    ("mutate", "culprit"),
    [
        (lambda d: d.update(format=99), "format"),
        (lambda d: d.update(held={}), "held"),
        (lambda d: d["held"][0].update(vmid="101"), "held[0].vmid"),
        (lambda d: d["held"][0].update(state="weird"), "held[0].state"),
        (lambda d: d["held"][0].update(colour="red"), "held[0].colour"),
        (lambda d: d["held"][0].pop("node"), "held[0]"),
        (lambda d: d["held"][0].update(gates=[1]), "held[0].gates"),
        (lambda d: d["tombstones"].append({"at": 1.0}), "tombstones[1]"),
        (lambda d: d["nodes"].update(pve9=[]), "nodes.pve9"),
        (lambda d: d["guests"][0].update(last_ran="yesterday"), "guests[0].last_ran"),
    ],
)
def test_malformed_state_names_the_culprit(mutate: Any, culprit: str) -> None:
    """A hand-edited or damaged state file is refused with the path of the bad value."""
    run = busy_run()
    data = json.loads(json.dumps(to_dict(run.state)))
    mutate(data)
    with pytest.raises(StateFileError, match=culprit.replace("[", r"\[").replace("]", r"\]")):
        from_dict(data, run.state.settings, "t")


def test_not_an_object_is_refused() -> None:
    """A state file holding a list (or anything but an object) is refused."""
    with pytest.raises(StateFileError):
        from_dict([], settings(), "t")
