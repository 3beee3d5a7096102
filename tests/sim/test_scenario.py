"""Scenario files: validation names the file and key; TOML round trip; the shipped seed is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from startgate.errors import ScenarioError
from startgate.sim import scenario as scn
from startgate.sim.model import Startup
from startgate.sim.play import seed_scenario

SEED = Path(__file__).parents[2] / "contrib/scenarios/seed-outage.toml"


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    """An unknown key is an error naming the file and the key path."""
    p = tmp_path / "bad.toml"
    p.write_text('name = "x"\n[[nodes]]\nname = "pve1"\nbootz = 3\n')
    with pytest.raises(ScenarioError) as err:
        scn.load(p)
    assert str(p) in str(err.value)
    assert "nodes[0].bootz: unknown key" in err.value.problems


def test_bad_references_and_values_are_named(tmp_path: Path) -> None:
    """A guest on an unknown node, a bad startup string and a fault on an unknown gate are each named."""
    base = 'name = "x"\n[[nodes]]\nname = "pve1"\n[[storages]]\nid = "s1"\ntype = "dir"\n'
    cases = {
        '[[guests]]\nvmid = 101\nnode = "nope"\ndisks = ["s1"]\n': "guests[0].node: no node 'nope'",
        '[[guests]]\nvmid = 101\nnode = "pve1"\ndisks = ["s1"]\nstartup = "order=x"\n': "guests[0].startup",
        '[[faults]]\nkind = "controller_never_healthy"\ngate = "g"\n': "faults[0].gate: no gate 'g'",
        '[[guests]]\nvmid = 101\nnode = "pve1"\ndisks = ["s1:vm-102-disk-0"]\n': "vm-101-disk-N",
    }
    for extra, expected in cases.items():
        with pytest.raises(ScenarioError) as err:
            scn.parse(base + extra, "case.toml")
        assert "case.toml" in str(err.value)
        assert expected in str(err.value), str(err.value)


def test_startup_parses_like_pve() -> None:
    """`order=N,up=S,down=S` and a bare order number parse; garbage does not."""
    assert Startup.parse("order=2,up=30") == Startup(2, 30, None)
    assert Startup.parse("3") == Startup(3, None, None)
    with pytest.raises(ValueError, match="cannot parse"):
        Startup.parse("order=2;up=3")


def test_seed_is_valid_packaged_and_round_trips() -> None:
    """The shipped seed validates, is the packaged copy, and dump/parse gives it back."""
    seed = scn.load(SEED)
    assert seed_scenario().read_text() == SEED.read_text()
    assert scn.parse(scn.dump(seed)) == seed
    assert len(seed.nodes) == 4
    ctrl = seed.guest(100)
    assert ctrl.ha_spec() is not None
    assert ctrl.disks[0].startswith("drbdstorage:")
    assert any(g.type == "lxc" and g.disks[0].startswith("drbdstorage") for g in seed.guests)
    assert any(all(not d.startswith("drbdstorage") for d in g.disks) for g in seed.guests if g.vmid != 100)
