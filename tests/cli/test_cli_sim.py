"""The CLI against the simulated cluster: its /etc/pve tree (real formats) and its HTTPS API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from startgate.bus.broker import MosquittoProcess
from startgate.cli import app
from startgate.commands.testing import fake_pvesh, pvesh_calls
from startgate.sim.cluster import SimCluster
from tests.cli.doctor_tree import fake_systemctl, path_with

pytestmark = pytest.mark.broker
SCENARIO = Path(__file__).resolve().parents[2] / "contrib/scenarios/seed-outage.toml"


class Sim:
    """A started seed-outage cluster (not booted) and a startgate config for it."""

    def __init__(self, sim: SimCluster, tmp: Path, broker_url: str, prefix: str) -> None:
        self.sim = sim
        self.tmp = tmp
        token = tmp / "token"
        token.write_text(sim.token.secret)
        token.chmod(0o600)
        ca = f'"{sim.ca_file}"' if sim.ca_file else "false"
        base = sim.api_url.removesuffix("/api2/json")
        self.cfg = tmp / "sg.toml"
        self.cfg.write_text(
            f"""
cluster = "pve1"
node = "pve1"
[bus]
brokers = ["{broker_url}"]
topic_prefix = "{prefix}"
connect_timeout_s = 3.0
[proxmox]
url = "{base}"
token_id = "{sim.token.token_id}"
token_secret_file = "{token}"
verify_tls = {ca}
config_dir = "{sim.config_dir}"
[[gates]]
name = "linstor"
vmid = 100
check = {{ kind = "linstor", urls = {json.dumps(sim.linstor_urls["linstor"])} }}
storages = ["drbdstorage"]
"""
        )

    def run(self, *args: str) -> Result:
        """Run startgate with fake pvesh and systemctl first on PATH."""
        return CliRunner().invoke(
            app, ["--config", str(self.cfg), *args], env={"PATH": path_with(self.tmp / "bin")}
        )


@pytest.fixture
def sim(tmp_path: Path, session_broker: MosquittoProcess, topic_prefix: str) -> Iterator[Sim]:
    """The seed-outage cluster from contrib/scenarios, started but not booted."""
    with SimCluster.from_scenario(SCENARIO, scale=0.01, workdir=tmp_path / "sim") as cluster:
        yield Sim(cluster, tmp_path, session_broker.url, topic_prefix)


def test_why_reads_the_simulated_guest_configs(sim: Sim) -> None:
    """`why` explains membership from the simulator's pmxcfs-format configs; the controller VM is exempt."""
    result = sim.run("why", "101")
    assert (
        'VM 101 (db1) on pve1 is a member of gate "linstor": scsi0 on storage "drbdstorage".' in result.stdout
    )
    result = sim.run("why", "100")
    assert 'is the own VM of gate "linstor"' in result.stdout


def test_attach_dry_run_on_the_simulated_cluster(sim: Sim) -> None:
    """attach --all --dry-run names every member guest of the scenario with its node and type."""
    fake_pvesh(sim.tmp / "bin", sim.tmp / "pvesh.log", sim.sim.config_dir)
    result = sim.run("attach", "--all", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    changes = json.loads(result.stdout)
    members = {v for v, g in sim.sim.guests.items() if sim.sim.member_gates(g) and v != 100}
    assert {c["vmid"] for c in changes} == members
    assert all(c["action"] == "set" and c["node"] == sim.sim.guests[c["vmid"]].node for c in changes)
    assert pvesh_calls(sim.tmp / "pvesh.log") == []


def test_doctor_reads_the_simulated_storage_ha_and_api(sim: Sim) -> None:
    """storage.cfg, ha/resources.cfg and the token's privileges, as the simulator has them, pass."""
    fake_systemctl(sim.tmp / "bin")
    result = sim.run("doctor", "--json", "--root", str(sim.tmp / "root"))
    checks = json.loads(result.stdout)["checks"]
    by = {(c["check"], c["status"]) for c in checks}
    assert ("storage drbdstorage", "ok") in by
    assert ("gate linstor VM", "ok") in by  # HA-managed, state started
    assert ("api token", "ok") in by
