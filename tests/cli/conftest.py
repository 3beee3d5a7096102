"""CLI test fixtures: a startgate.toml per test, an /etc/pve-like tree, retained state and a runner."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from startgate.bus import messages as m
from startgate.bus.broker import MosquittoProcess
from startgate.bus.mqtt import ClientSettings
from startgate.bus.topics import Topics
from startgate.cli import app
from startgate.commands.testing import publish_retained

# Guest configs by VMID: (node, subdirectory, config text).
GUESTS = {
    100: (
        "pve1",
        "qemu-server",
        "name: linstor-ctrl\nscsi0: local-lvm:vm-100-disk-0,size=32G\nonboot: 1\n",
    ),
    101: (
        "pve1",
        "qemu-server",
        (
            "name: web1\nscsi0: drbdstorage:vm-101-disk-1,size=8G\nonboot: 1\nstartup: order=2\n"
            "hookscript: local:snippets/startgate-hook\n"
        ),
    ),
    102: (
        "pve2",
        "lxc",
        (
            "hostname: db\nrootfs: drbdstorage:vm-102-disk-1,size=8G\ntags: db;prod\n"
            "hookscript: local:snippets/startgate-hook\n"
        ),
    ),
    103: ("pve2", "qemu-server", "name: plain\nscsi0: local-lvm:vm-103-disk-0,size=8G\n"),
}


def write_tree(config_dir: Path, guests: dict[int, tuple[str, str, str]] = GUESTS) -> Path:
    """An /etc/pve-like tree with the given guest configs."""
    for vmid, (node, sub, text) in guests.items():
        path = config_dir / "nodes" / node / sub / f"{vmid}.conf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return config_dir


def write_config(
    path: Path,
    brokers: Sequence[str],
    prefix: str,
    config_dir: Path,
    *,
    extra: str = "",
    gate_extra: str = "",
) -> Path:
    """A startgate.toml for the tests: one linstor gate (VM 100) on storage drbdstorage and tag db."""
    path.write_text(
        f"""
cluster = "pve1"
node = "pve1"
{extra}
[bus]
brokers = {json.dumps(list(brokers))}
topic_prefix = "{prefix}"
connect_timeout_s = 3.0
[proxmox]
config_dir = "{config_dir}"
token_secret_file = "{path.parent / "token"}"
[[gates]]
name = "linstor"
vmid = 100
check = {{ kind = "linstor", urls = ["http://10.43.7.254:3370"] }}
storages = ["drbdstorage"]
tags = ["db"]
{gate_extra}
"""
    )
    return path


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """The good /etc/pve-like tree."""
    return write_tree(tmp_path / "pve")


@pytest.fixture
def topics(topic_prefix: str) -> Topics:
    """This test's topic names."""
    return Topics(topic_prefix, "pve1")


@pytest.fixture
def cfg_file(tmp_path: Path, session_broker: MosquittoProcess, topic_prefix: str, config_dir: Path) -> Path:
    """A config pointing at the shared broker, this test's prefix and the good tree."""
    return write_config(tmp_path / "sg.toml", [session_broker.url], topic_prefix, config_dir)


Invoke = Callable[..., Result]


@pytest.fixture
def invoke(cfg_file: Path) -> Invoke:
    """Run `startgate --config <cfg_file> ARGS...` through typer's CliRunner."""

    def run(*args: str, input: str | None = None) -> Result:  # noqa: A002 - CliRunner's own name
        return CliRunner().invoke(app, ["--config", str(cfg_file), *args], input=input)

    return run


def now() -> float:
    """The wall clock (messages carry epoch times)."""
    return time.time()


def held(vmid: int, **kw: object) -> m.HeldStart:
    """A held start record with sensible defaults."""
    t = now()
    base: dict[str, object] = {
        "vmid": vmid,
        "node": "pve1",
        "type": "qemu",
        "gates": ["linstor"],
        "first_held": t - 300,
        "last_held": t - 10,
        "attempts": 2,
    }
    return m.HeldStart.model_validate(base | kw)


def health(healthy: bool, **kw: object) -> m.GateHealth:
    """A gate health record for gate linstor."""
    t = now()
    base: dict[str, object] = {
        "gate": "linstor",
        "healthy": healthy,
        "since": t - 600,
        "checked_at": t - 1,
        "latency_ms": 2.5,
        "detail": "200 from http://10.43.7.254:3370/health" if healthy else "connection refused",
        "target": "http://10.43.7.254:3370/health",
        "nodes_ready": ["pve1", "pve2"] if healthy else [],
    }
    return m.GateHealth.model_validate(base | kw)


def coordinator(**kw: object) -> m.CoordinatorStatus:
    """A fresh leader status from pve2."""
    t = now()
    base: dict[str, object] = {"time": t - 2, "node": "pve2", "since": t - 3600, "version": "0.1.0"}
    return m.CoordinatorStatus.model_validate(base | kw)


def node(name: str, **kw: object) -> m.NodeStatus:
    """An online node agent with its hook in place."""
    base: dict[str, object] = {
        "time": now() - 100,
        "node": name,
        "state": "online",
        "version": "0.1.0",
        "hook": {"path": "/var/lib/vz/snippets/startgate-hook", "exists": True, "executable": True},
    }
    return m.NodeStatus.model_validate(base | kw)


@pytest.fixture
def seed(session_broker: MosquittoProcess, topics: Topics, fast: ClientSettings) -> Callable[..., None]:
    """Publish retained state messages on the shared broker under this test's prefix."""

    def put(*msgs: m.Message) -> None:
        publish_retained(session_broker.url, topics, fast, msgs)

    return put
