"""The seam to the real startgate processes: per-node configs, the hook snippet, the broker child."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from startgate import config as sg_config
from startgate.sim import scenario as scn
from startgate.sim.broker import MosquittoChild
from startgate.sim.startgate_side import HOOK_FILE, StartgateSide
from tests.sim.conftest import SimFactory, scenario


def test_node_configs_are_valid_startgate_configs(make_sim: SimFactory, tmp_path: Path) -> None:
    """Each node's startgate.toml validates and points at the sim's API, token, config_dir and controller."""
    sim = make_sim(scenario(extra_guests=[{"vmid": 101, "node": "pve2", "disks": ["drbdstorage"]}]))
    side = StartgateSide(broker_url="mqtt://127.0.0.1:1")
    secret = tmp_path / "token"
    data = side.node_config(sim, "pve2", secret)
    path = tmp_path / "startgate.toml"
    path.write_text(scn.dump_toml(data))
    cfg = sg_config.load(path)
    assert cfg.node == "pve2"
    assert cfg.proxmox.url == sim.api.base_url
    assert cfg.proxmox.token_id == sim.token.token_id
    assert cfg.proxmox.config_dir == sim.config_dir
    assert cfg.gates[0].vmid == 100
    assert cfg.gates[0].check.kind == "linstor"
    assert list(cfg.gates[0].check.urls) == sim.linstor_urls["linstor"]


def test_hook_snippet_runs_the_hook_module_with_the_node_config(make_sim: SimFactory) -> None:
    """The snippet is a shell script that execs this Python on the hook module with STARTGATE_CONFIG set."""
    sim = make_sim(scenario())
    side = StartgateSide()
    text = side.hook_snippet(Path("/x/startgate.toml"))
    assert text.startswith("#!/bin/sh\n")
    assert "STARTGATE_CONFIG='/x/startgate.toml'" in text
    assert f'-m {side.parts.hook} "$@"' in text
    volid = sim.install_snippet("pve1", HOOK_FILE, text)
    assert volid == "local:snippets/startgate-hook"
    assert os.access(sim.snippets_dir("pve1") / HOOK_FILE, os.X_OK)


def test_missing_parts_are_named() -> None:
    """`missing()` names each absent part with its module, so the demo can say what is not built yet."""
    side = StartgateSide()
    for entry in side.missing():
        role, _, module = entry.partition(" (")
        assert role in {"hookscript", "node agent", "coordinator"}
        assert module.startswith("startgate.")


def test_mosquitto_child_listens_and_stops(tmp_path: Path) -> None:
    """The demo's own broker listens on a free loopback port and goes away when stopped."""
    with MosquittoChild(tmp_path) as broker:
        assert broker.url.startswith("mqtt://127.0.0.1:")
        with socket.create_connection(("127.0.0.1", broker.port), timeout=2):
            pass
        broker.stop()
        assert not broker.running
