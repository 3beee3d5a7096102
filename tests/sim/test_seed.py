"""The seed outage reproduced: without startgate the DRBD guests stay stopped."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from startgate.cli import app
from startgate.sim.play import play, seed_scenario


def test_seed_without_startgate_leaves_drbd_guests_stopped() -> None:
    """Only the controller VM and the local-lvm guest run; every DRBD guest fails; HA ones end in error."""
    result = play(seed_scenario(), with_startgate=False)
    final = {o.vmid: o for o in result.outcomes}
    assert final[100].running
    assert final[106].running
    drbd = [v for v, o in final.items() if "linstor" in o.gates]
    assert drbd
    assert all(not final[v].running for v in drbd)
    assert {final[104].ha, final[107].ha} == {"error"}
    assert not result.ok
    assert {v.vmid for v in result.invariants.by_rule("should_run")} == set(drbd)
    assert not result.invariants.by_rule("gated")
    assert not result.invariants.by_rule("twice")
    assert result.events[-1].t > next(e.t for e in result.events if e.kind == "gate_healthy")


def test_demo_cli_without_startgate_exits_1_and_writes_json(tmp_path: Path) -> None:
    """`startgate demo --without-startgate --json` prints the failure, exits 1 and writes the result."""
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["demo", "--without-startgate", "--json", str(out)])
    assert res.exit_code == 1, res.output
    assert "Timeline" in res.output
    assert "[FAIL] every guest that should run ends running" in res.output
    doc = json.loads(out.read_text())
    assert doc["ok"] is False
    assert doc["startgate"] == "off"
    assert any(e["kind"] == "gate_healthy" for e in doc["events"])
