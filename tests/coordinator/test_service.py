"""The coordinator service in-process on a small simulated cluster (no hooks): API failures, the CLI.

Without hookscripts, the onboot DRBD guests fail in the storage plugin while the controller loads;
the coordinator finds them by reconciliation and starts them once the gate is healthy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from startgate.bus import messages
from startgate.bus.broker import MosquittoProcess
from startgate.bus.topics import Topics
from startgate.cli import app
from startgate.coordinator.metrics import sample
from startgate.coordinator.testing import Running, sim_config
from startgate.sim import scenario as scn
from startgate.sim.bustap import BusTap
from startgate.sim.cluster import SimCluster
from tests.sim.conftest import SimFactory

SMALL: dict[str, Any] = {
    "name": "small",
    "nodes": [{"name": "pve1", "boot_s": 1.0}, {"name": "pve2", "boot_s": 2.0}],
    "storages": [
        {"id": "local", "type": "dir", "path": "/var/lib/vz", "content": ["snippets"]},
        {"id": "local-lvm", "type": "lvmthin", "content": ["images", "rootdir"]},
        {
            "id": "drbdstorage",
            "type": "drbd",
            "content": ["images", "rootdir"],
            "controller_gates": ["linstor"],
        },
    ],
    "gates": [
        {"name": "linstor", "vmid": 100, "storages": ["drbdstorage"], "boot_s": 20.0, "satellite_s": 2.0}
    ],
    "guests": [
        {"vmid": 100, "node": "pve1", "disks": ["local-lvm"], "onboot": True, "startup": "order=0"},
        {"vmid": 101, "node": "pve1", "disks": ["drbdstorage"], "onboot": True},
        {"vmid": 102, "node": "pve2", "type": "lxc", "disks": ["drbdstorage"], "onboot": True},
    ],
}


def small(**changes: Any) -> scn.Scenario:
    """The small scenario with top-level keys replaced."""
    return scn.Scenario.model_validate(SMALL | changes)


def wait(pred: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll `pred` (real seconds) until it holds or `timeout` passes."""
    pause = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if pred():
            return True
        pause.wait(0.05)
    return pred()


def running(sim: SimCluster, *vmids: int) -> bool:
    """All of `vmids` run."""
    return all(sim.guest_state(v).status == "running" for v in vmids)


def _tap(broker: MosquittoProcess, prefix: str, sim: SimCluster) -> BusTap:
    return BusTap(broker.url, Topics(prefix, sim.scenario.cluster), client_id=f"tap-{prefix}").start()


def _held(tap: BusTap, vmid: int) -> list[messages.HeldStart]:
    return [
        m for m in tap.record().of(messages.HeldStart) if isinstance(m, messages.HeldStart) and m.vmid == vmid
    ]


def test_the_coordinator_starts_what_failed_in_the_plugin(
    make_sim: SimFactory, session_broker: MosquittoProcess, tmp_path: Path, topic_prefix: str
) -> None:
    """Found by reconciliation, started once the gate is healthy, READY and STATUS told to systemd.

    A second broker in the list is down the whole time: the coordinator works with the one it has.
    """
    sim = make_sim(small())
    brokers = [session_broker.url, "mqtt://127.0.0.1:1"]
    cfg = sim_config(sim, node="pve1", brokers=brokers, topic_prefix=topic_prefix, root=tmp_path)
    with Running(cfg) as run:
        sim.boot_all()
        assert wait(lambda: running(sim, 100, 101, 102))
        assert wait(lambda: not run.service.loop.state.held)
        events = run.notifier.events
        assert "READY=1" in events
        assert any(e.startswith("STATUS=leader; gates: linstor healthy") for e in events)
        assert sample(run.service.metrics, "startgate_leader") == 1.0
    assert "STOPPING=1" in run.notifier.events
    assert run.error is None
    assert not (tmp_path / "lock" / "startgate").exists()  # released on a clean stop


def test_api_5xx_is_retried_and_published(
    make_sim: SimFactory, session_broker: MosquittoProcess, tmp_path: Path, topic_prefix: str
) -> None:
    """Start calls answered 500 are retried with backoff; the error is in the published held record."""
    sim = make_sim(small())
    sim.inject_api_fault(status=500, from_s=0, until_s=1e9, path="/status/start")
    cfg = sim_config(sim, node="pve1", brokers=[session_broker.url], topic_prefix=topic_prefix, root=tmp_path)
    tap = _tap(session_broker, topic_prefix, sim)
    try:
        with Running(cfg) as run:
            sim.boot_all()
            assert wait(lambda: any("HTTP 500" in h.reason for h in _held(tap, 101)))
            sim.api.faults.clear()
            assert wait(lambda: running(sim, 101, 102))
            assert (
                sample(
                    run.service.metrics, "startgate_api_errors_total", [("call", "start"), ("status", "500")]
                )
                or 0
            ) >= 1
    finally:
        tap.stop()


def test_missing_privilege_fails_clearly(
    make_sim: SimFactory, session_broker: MosquittoProcess, tmp_path: Path, topic_prefix: str
) -> None:
    """A token without VM.PowerMgmt: retries end in a failed held start that names the privilege."""
    sim = make_sim(small())
    cfg = sim_config(
        sim,
        node="pve1",
        brokers=[session_broker.url],
        topic_prefix=topic_prefix,
        root=tmp_path,
        token=sim.audit_token,
    )
    tap = _tap(session_broker, topic_prefix, sim)
    try:
        with Running(cfg):
            sim.boot_all()
            assert wait(lambda: any(h.state == "failed" for h in _held(tap, 101)))
            failed = next(h for h in _held(tap, 101) if h.state == "failed")
            assert "403" in failed.reason
            assert "VM.PowerMgmt" in failed.reason
            assert not running(sim, 101)
    finally:
        tap.stop()


def test_an_unanswered_start_is_looked_at_before_it_is_issued_again(
    make_sim: SimFactory, session_broker: MosquittoProcess, tmp_path: Path, topic_prefix: str
) -> None:
    """A start call that times out may have happened: the guest ends running, started once."""
    sim = make_sim(small())
    sim.inject_api_fault(status=500, from_s=0, until_s=1e9, path="/status/start", delay_s=300.0)
    cfg = sim_config(sim, node="pve1", brokers=[session_broker.url], topic_prefix=topic_prefix, root=tmp_path)
    cfg = cfg.model_copy(update={"proxmox": cfg.proxmox.model_copy(update={"timeout_s": 0.5})})
    tap = _tap(session_broker, topic_prefix, sim)
    try:
        with Running(cfg):
            sim.boot_all()
            assert wait(lambda: any("no answer" in h.reason for h in _held(tap, 101)))
            sim.api.faults.clear()
            assert wait(lambda: running(sim, 101, 102))
    finally:
        tap.stop()
    starts = [e for e in sim.events.snapshot() if e.kind == "guest_running" and e.vmid == 101]
    assert len(starts) == 1


def test_cli_release_and_drop_answered_by_the_coordinator(
    make_sim: SimFactory, session_broker: MosquittoProcess, tmp_path: Path, topic_prefix: str
) -> None:
    """`startgate release` is refused while the gate is down, `--force` gets a ticket, `drop` forgets."""
    sim = make_sim(small())
    sim.controller_never_healthy("linstor")
    cfg = sim_config(sim, node="pve1", brokers=[session_broker.url], topic_prefix=topic_prefix, root=tmp_path)
    path = tmp_path / "startgate.toml"
    path.write_text(scn.dump_toml(cfg.model_dump(mode="json", exclude_none=True)))
    cli = CliRunner()
    with Running(cfg) as run:
        sim.boot_all()
        assert wait(lambda: {101, 102} <= set(run.service.loop.state.held))
        res = cli.invoke(app, ["--config", str(path), "release", "101"])
        assert res.exit_code == 1, res.output
        assert "refused" in res.output
        assert "gate linstor unhealthy" in res.output
        res = cli.invoke(app, ["--config", str(path), "release", "--force", "--yes", "102"])
        assert res.exit_code == 0, res.output
        assert "ticket" in res.output
        res = cli.invoke(app, ["--config", str(path), "drop", "101"])
        assert res.exit_code == 0, res.output
        assert "dropped" in res.output
        assert wait(lambda: 101 not in run.service.loop.state.held)
