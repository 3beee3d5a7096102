"""The seam to the real startgate processes: per-node files, the real install, hookscripts, services."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from startgate import config as sg_config
from startgate.bus.broker import MosquittoProcess
from startgate.bus.topics import Topics
from startgate.hooks import settings as hook_settings
from startgate.hooks.snippet import MARKER, shebang_interpreter
from startgate.sim.cluster import SimCluster
from startgate.sim.services import NodeFiles, NodeServices, Service
from startgate.sim.startgate_side import HOOK_VOLID, StartgateSide, command_exists
from tests.sim.conftest import SimFactory, scenario

GUESTS = [
    {"vmid": 101, "node": "pve2", "disks": ["drbdstorage:vm-101-disk-0"]},
    {"vmid": 102, "node": "pve1", "disks": ["local-lvm:vm-102-disk-0"], "tags": ["db"]},
    {"vmid": 103, "node": "pve3", "type": "lxc", "disks": ["drbdstorage:vm-103-disk-0"]},
]


@pytest.fixture
def deployed(
    make_sim: SimFactory, session_broker: MosquittoProcess, topic_prefix: str
) -> Iterator[tuple[SimCluster, StartgateSide]]:
    """A small cluster with startgate deployed on it (nodes not booted yet); torn down after the test."""
    sim = make_sim(scenario(extra_guests=GUESTS))
    side = StartgateSide(broker_url=session_broker.url, coordinator=False, topic_prefix=topic_prefix)
    side.start(sim)
    yield sim, side
    side.stop()


def test_node_configs_point_into_each_nodes_own_tree(deployed: tuple[SimCluster, StartgateSide]) -> None:
    """Each node's startgate.toml validates and keeps spool, state, token and snippet under that node."""
    sim, side = deployed
    for node, files in side.files.items():
        cfg = sg_config.load(files.config)
        assert cfg.node == node
        assert cfg.proxmox.url == sim.api.base_url
        assert cfg.proxmox.token_id == sim.token.token_id
        assert cfg.proxmox.verify_tls == sim.ca_file
        assert cfg.proxmox.config_dir == sim.config_dir
        assert sg_config.read_secret(cfg.proxmox.token_secret_file, "token") == sim.token.secret
        for path in (cfg.hook.spool_dir, cfg.coordinator.state_dir, cfg.proxmox.token_secret_file):
            assert path.is_relative_to(files.root)
        assert cfg.hook.snippet == sim.snippets_dir(node) / "startgate-hook"
        assert cfg.coordinator.lock_dir == sim.config_dir / "priv/lock/startgate"  # shared, like pmxcfs
        assert cfg.gates[0].check.kind == "linstor"
        assert list(cfg.gates[0].check.urls) == sim.linstor_urls["linstor"]
        assert sim.node_env[node] == files.env()


def test_the_real_install_wrote_snippet_cache_and_dirs(deployed: tuple[SimCluster, StartgateSide]) -> None:
    """`startgate install`'s own code wrote each node's snippet (this venv's python -IS), cache and dirs."""
    sim, side = deployed
    for node, files in side.files.items():
        snippet = sim.snippets_dir(node) / "startgate-hook"
        text = snippet.read_text()
        assert MARKER in text
        assert shebang_interpreter(text) == sys.executable
        assert text.splitlines()[0].endswith(" -IS")
        assert os.access(snippet, os.X_OK)
        assert hook_settings.read_cached(str(files.config), files.env()) is not None
        assert files.spool.is_dir()
        assert (files.units / "startgate-agent.service").is_file()
        assert not any(Path(p).is_relative_to("/var") for p in (files.spool, files.cache))


def test_hookscript_goes_on_members_only(deployed: tuple[SimCluster, StartgateSide]) -> None:
    """Members (DRBD VM, DRBD CT) get `hookscript:`; the gate's own VM and the non-member do not."""
    sim, side = deployed
    assert side.members == {101: ("linstor",), 103: ("linstor",)}
    assert sim.guests[101].hookscript == HOOK_VOLID
    assert sim.guests[103].hookscript == HOOK_VOLID
    assert sim.guests[100].hookscript is None
    assert sim.guests[102].hookscript is None
    conf = (sim.config_dir / "nodes/pve2/qemu-server/101.conf").read_text()
    assert f"hookscript: {HOOK_VOLID}" in conf


def test_agent_follows_node_power(deployed: tuple[SimCluster, StartgateSide]) -> None:
    """A node's agent starts when it boots (fresh boot id) and is SIGKILLed when it loses power."""
    sim, side = deployed
    assert side.services is not None
    assert side.services.running("pve1", "agent") is None
    sim.boot.boot("pve1", delay_s=0)
    services = side.services
    assert sim.clock.wait_for(lambda: services.running("pve1", "agent") is not None, 300)
    files: NodeFiles = side.files["pve1"]
    boot_id = files.boot_id.read_text().strip()
    pid = side.services.running("pve1", "agent")
    assert pid is not None
    sim.kill_node("pve1")
    assert side.services.running("pve1", "agent") is None
    assert side.services.killed == 1
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert boot_id
    assert side.problems() == []


def test_coordinator_is_detected_through_the_cli() -> None:
    """The coordinator counts as available only when `startgate coordinator` is a command of this build."""
    assert command_exists("agent")
    assert command_exists("hook")
    assert not command_exists("no-such-command")
    side = StartgateSide(coordinator=False)
    assert side.missing() == ["turned off for this run"]
    assert [s.name for s in side.service_list()] == ["agent"]
    auto = StartgateSide()
    assert bool(auto.missing()) != command_exists("coordinator")
    assert ("coordinator" in [s.name for s in auto.service_list()]) == command_exists("coordinator")


def test_service_command_lines_and_a_service_that_dies_is_reported(
    make_sim: SimFactory, tmp_path: Path
) -> None:
    """Services run as `python -m startgate --config <toml> ...`; one that exits on its own is named."""
    sim = make_sim(scenario())
    files = {"pve1": NodeFiles("pve1", tmp_path / "pve1")}
    files["pve1"].config.parent.mkdir(parents=True)
    broken = Service("coordinator", ("no-such-command",))
    services = NodeServices(files, [broken], stop_grace_s=1.0)
    argv = services.argv("pve1", Service("coordinator", ("coordinator",)))
    assert argv == [sys.executable, "-m", "startgate", "--config", str(files["pve1"].config), "coordinator"]
    assert services.env("pve1")["STARTGATE_CONFIG"] == str(files["pve1"].config)
    assert "NOTIFY_SOCKET" not in services.env("pve1")
    services.on_power("pve1", True)
    assert sim.clock.wait_for(lambda: services.running("pve1", "coordinator") is None, 1000, poll=5)
    services.stop_all()
    assert [(e.node, e.service, e.code) for e in services.exited] == [("pve1", "coordinator", 2)]
    assert "no-such-command" in (files["pve1"].logs / "coordinator.log").read_text()


def test_a_configured_broker_gets_a_topic_prefix_of_the_runs_own() -> None:
    """On the sim's own broker the prefix is "startgate"; on a configured one, one per run."""
    assert StartgateSide().topic_prefix == "startgate"
    prefix = StartgateSide(broker_url="mqtt://127.0.0.1:1883").topic_prefix
    assert prefix.startswith("startgate-sim/")
    assert prefix != StartgateSide(broker_url="mqtt://127.0.0.1:1883").topic_prefix
    assert Topics(prefix, "pve1").held(101) == f"{prefix}/pve1/held/101"
