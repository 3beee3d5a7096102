"""The coordinator service's own speed: release reaction, a release storm, bus ingest, memory.

`python -m bench.coordinator [--json] [--quick]`. A real Coordinator (loop, pools, per-broker
publisher, leader lock) on a private loopback Mosquitto; the Proxmox API and the gate probe are
in-process fakes that answer at once, so the figures are the coordinator's own costs:
- release reaction: the gate turns healthy -> the first start call is made (the health publish
  acknowledged by the broker first, as the hook must read it);
- 1,000 held starts (16 nodes, max_parallel_starts 64): the gate turns healthy -> every start issued;
- bus ingest: hook events validated, deduplicated and stepped per second, put where paho's network
  thread puts them (and, as a baseline, end to end from a Python QoS 1 publisher in another
  process, which on a 2-core machine is bounded by the publisher itself);
- RSS of this process with 10,000 held starts (an upper bound: the fakes and the bench run in it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from bench.report import Figure, emit, median, parse_args
from startgate import config as sg_config
from startgate.bus.broker import MosquittoProcess
from startgate.bus.messages import GuestEvent
from startgate.bus.topics import Topics
from startgate.bus.values import Message
from startgate.coordinator.api import TaskStatus
from startgate.coordinator.service import Coordinator, ServiceOptions
from startgate.coordinator.testing import FakeNotifier
from startgate.core.events import Event, GuestMissing, GuestObserved, NodeObserved, ProbeResult

BOOT = 1_000_000.0


class FakePve:
    """An API that knows `n` stopped onboot members spread over `nodes` and starts them at once."""

    def __init__(self, n: int, nodes: int) -> None:
        self.guests = {1000 + i: f"n{i % nodes}" for i in range(n)}
        self.nodes = sorted(set(self.guests.values()))
        self.started: dict[int, float] = {}
        self.lock = threading.Lock()

    def start(self, node: str, type_: str, vmid: int) -> str:
        with self.lock:
            self.started.setdefault(vmid, time.monotonic())
        return f"UPID:{node}:00000001:00000001:00000001:qmstart:{vmid}:x@pve!t:"

    def task_status(self, node: str, upid: str) -> TaskStatus:
        return TaskStatus(running=False, ok=True, exitstatus="OK")

    def set_ha_state(self, type_: str, vmid: int, state: str) -> None:
        return

    def _guest(self, vmid: int, observed_at: float) -> GuestObserved:
        return GuestObserved(
            vmid,
            self.guests[vmid],
            "qemu",
            "running" if vmid in self.started else "stopped",
            ("g",),
            onboot=True,
            observed_at=observed_at,
        )

    def observe(self, node: str, type_: str, vmid: int, observed_at: float) -> GuestObserved | GuestMissing:
        return self._guest(vmid, observed_at) if vmid in self.guests else GuestMissing(vmid)

    def reconcile(self, nodes: Sequence[str] | None, observed_at: float, wall: float) -> list[Event]:
        out: list[Event] = [NodeObserved(n, True, BOOT, True) for n in self.nodes]
        return out + [self._guest(v, observed_at) for v in self.guests]


class FakeProbe:
    """A gate probe whose answer the bench flips."""

    def __init__(self) -> None:
        self.ok = False

    def probe(self) -> ProbeResult:
        return ProbeResult("g", self.ok, 0.1, "fake")


def config(tmp: Path, broker: str, parallel: int) -> sg_config.Config:
    """A coordinator config for the fakes (fast intervals, a private state and lock dir)."""
    return sg_config.from_dict(
        {
            "cluster": "bench",
            "node": "n0",
            "bus": {"brokers": [broker], "topic_prefix": f"b{os.getpid()}"},
            "gates": [{"name": "g", "check": {"kind": "tcp", "host": "127.0.0.1", "port": 9}, "vmids": [100],
                       "interval_s": 0.05, "healthy_after": 1}],
            "coordinator": {"state_dir": str(tmp / "state"), "lock_dir": str(tmp / "lock" / "sg"),
                            "lock_timeout_s": 5.0, "max_parallel_starts": parallel,
                            "reconcile_interval_s": 3600.0, "heartbeat_s": 3600.0, "api_workers": 16},
        }
    )  # fmt: skip


def wait(pred: object, timeout: float) -> bool:
    """Poll `pred` until true or `timeout` seconds passed."""
    pause = threading.Event()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():  # type: ignore[operator]
            return True
        pause.wait(0.002)
    return False


def storm(tmp: Path, broker: str, n: int, nodes: int, parallel: int) -> tuple[float, float | None, float]:
    """Hold `n` starts, heal the gate; seconds until all were issued, the reaction, and RSS in MiB."""
    pve, probe = FakePve(n, nodes), FakeProbe()
    svc = Coordinator(
        config(tmp, broker, parallel),
        pve=pve,
        probes={"g": probe},
        notifier=FakeNotifier(),
        options=ServiceOptions(connect_wait_s=5.0, settle_quiet_s=0.1),
    )
    stop = threading.Event()
    thread = threading.Thread(target=svc.run, args=(stop,), daemon=True)
    thread.start()
    if not wait(lambda: svc.loop.state.leader and len(svc.loop.state.held) == n, 120.0):
        raise SystemExit(f"bench: {len(svc.loop.state.held)} of {n} starts held")
    rss = rss_mib()
    t0 = time.monotonic()
    probe.ok = True
    done = wait(lambda: len(pve.started) == n, 60.0)
    issued = (max(pve.started.values()) - t0) if done else float("inf")
    reaction = svc.metrics.last_reaction_s
    stop.set()
    thread.join(30.0)
    return issued, reaction, rss


def rss_mib() -> float:
    """This process's resident set size in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


PUBLISHER = r"""
import json, sys, time, uuid
import paho.mqtt.client as mqtt
host, port, prefix, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
c.max_inflight_messages_set(1000)
c.max_queued_messages_set(0)
c.connect(host, port)
c.loop_start()
infos = []
for i in range(n):
    vmid = 2000 + i % 500
    ev = {"v": 1, "event_id": uuid.uuid4().hex, "time": time.time(), "vmid": vmid, "node": "n1",
          "type": "qemu", "phase": "pre-start", "decision": "hold", "reason": "bench", "gates": ["g"]}
    infos.append(c.publish(f"{prefix}/bench/guest/{vmid}/event", json.dumps(ev), qos=1))
for info in infos:
    info.wait_for_publish(30)
c.disconnect(); c.loop_stop()
"""


def _events(prefix: str, n: int) -> list[Message]:
    topics = Topics(prefix, "bench")
    out = []
    for i in range(n):
        vmid = 2000 + i % 500
        ev = GuestEvent(time=time.time(), vmid=vmid, node="n1", type="qemu", phase="pre-start",
                        decision="hold", reason="bench", gates=["g"])  # fmt: skip
        out.append(Message(topics.guest_event(vmid), ev.to_json(), False, "bench"))
    return out


def pipeline(n: int) -> float:
    """Events per second through validation, dedupe and the core's step alone (one thread)."""
    from startgate.coordinator.busio import BusIn  # noqa: PLC0415
    from startgate.core.events import LockAcquired, Started  # noqa: PLC0415
    from startgate.core.machine import step  # noqa: PLC0415
    from startgate.core.model import GateSpec, Settings, initial_state  # noqa: PLC0415

    bus = BusIn(None, Topics("p", "bench"))
    state = initial_state(Settings(node="n0", gates=(GateSpec("g"),)), "bench")
    for ev in (Started(), LockAcquired()):
        state, _ = step(state, ev, time.time())
    raw = _events("p", n)
    t0 = time.perf_counter()
    for m in raw:
        event = bus.handle(m)
        if event is not None:
            state, actions = step(state, event, time.time())
            for a in actions:
                msg = getattr(a, "message", None)
                if msg is not None and not isinstance(msg, str):
                    msg.to_json()
    return n / (time.perf_counter() - t0)


def ingest(tmp: Path, broker: MosquittoProcess, n: int) -> tuple[float, float]:
    """Hook events per second the coordinator validates, deduplicates and steps (as leader).

    First as fast as the coordinator can take them (raw messages put where paho's network thread
    puts them), then end to end from a QoS 1 publisher in another process through the broker.
    """
    pve, probe = FakePve(1, 1), FakeProbe()
    pve.guests |= {2000 + i: "n1" for i in range(500)}  # the guests the hook events are about
    cfg = config(tmp, broker.url, 4)
    svc = Coordinator(cfg, pve=pve, probes={"g": probe}, notifier=FakeNotifier())
    stop = threading.Event()
    thread = threading.Thread(target=svc.run, args=(stop,), daemon=True)
    thread.start()
    wait(lambda: svc.loop.state.leader, 30.0)
    raw = _events(cfg.bus.topic_prefix, n)
    steps0 = svc.loop.steps
    t0 = time.monotonic()
    for m in raw:
        svc.group.inbox.put(m)
    ok = wait(lambda: svc.loop.steps - steps0 >= n, 120.0)
    direct = n / (time.monotonic() - t0)
    before = svc.bus_in.counters.snapshot().received
    host, port = broker.url.removeprefix("mqtt://").split(":")
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, host, port, cfg.bus.topic_prefix, str(n)])
    wait(lambda: svc.bus_in.counters.snapshot().received > before, 30.0)
    t0 = time.monotonic()
    steps0 = svc.loop.steps
    ok = ok and wait(lambda: svc.loop.steps - steps0 >= n - 1, 120.0)
    wire = n / (time.monotonic() - t0)
    proc.wait(60)
    stop.set()
    thread.join(30.0)
    if not ok:
        raise SystemExit("bench: not every event was stepped")
    return direct, wire


def main() -> None:
    """Measure and print the figures."""
    args = parse_args(__doc__ or "")
    with tempfile.TemporaryDirectory() as tmp, MosquittoProcess(Path(tmp) / "mq") as broker:
        root = Path(tmp)
        reactions = []
        for i in range(1 if args.quick else 5):
            _, reaction, _ = storm(root / f"r{i}", broker.url, 8, 2, 4)
            reactions.append(reaction if reaction is not None else float("inf"))
        issued, _, _ = storm(root / "storm", broker.url, 1000, 16, 64)
        _, _, rss = storm(root / "rss", broker.url, 1000 if args.quick else 10_000, 16, 64)
        rate, wire = ingest(root / "ingest", broker, 2000 if args.quick else 20_000)
        alone = pipeline(2000 if args.quick else 20_000)
    ms = 1000.0
    reaction = median(reactions)
    held = 1000 if args.quick else 10_000
    emit(
        [
            Figure("coordinator: release reaction (healthy -> first start)", reaction * ms, "ms", "< 100 ms",
                   "fake API, loopback broker", reaction * ms < 100),
            Figure("coordinator: 1,000 held starts all issued", issued, "s", "<= 2 s",
                   "16 nodes x max_parallel_starts 64, instant tasks", issued <= 2),
            Figure("coordinator: bus ingest (hook events stepped)", rate, "ev/s", ">= 5,000",
                   f"core pipeline alone {alone:,.0f} ev/s; from a Python publisher {wire:,.0f} ev/s",
                   rate >= 5000),
            Figure(f"coordinator: RSS with {held:,} held starts", rss, "MiB", "<= 100 MiB",
                   "this process: fakes and bench included", rss <= 100),
        ],
        args.json,
    )  # fmt: skip


if __name__ == "__main__":
    main()
