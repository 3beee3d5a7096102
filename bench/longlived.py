"""A long-lived coordinator: memory and descriptors across many hold/release cycles.

`python -m bench.longlived [--json] [--quick]`. The soak plays cold boots, where every process is
new; a coordinator that lives for months sees the same guests held and released again and again
(gate flaps, maintenance). One real Coordinator (on a private loopback Mosquitto, the API and probe
faked as in bench.coordinator) goes through cycles of: gate down -> 1,000 hook refusals -> gate
healthy -> every start issued and confirmed. Its RSS and open descriptors early on (after the
first cycle) are compared with those of the last cycles. The bounded caches are sized to fill in
the first cycle (the message-id dedupe window is one cycle of events), so what grows is a leak.
"""

from __future__ import annotations

import gc
import tempfile
import threading
import time
from pathlib import Path

from bench.coordinator import FakeProbe, FakePve, config, rss_mib, wait
from bench.report import Figure, emit, median, parse_args
from startgate.bus.broker import MosquittoProcess
from startgate.bus.messages import GuestEvent
from startgate.bus.topics import Topics
from startgate.bus.values import Message
from startgate.coordinator.service import Coordinator, ServiceOptions
from startgate.coordinator.testing import FakeNotifier


def fds() -> int:
    """Open descriptors of this process."""
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


def _refusals(topics: Topics, pve: FakePve) -> list[Message]:
    out = []
    for vmid, node in pve.guests.items():
        ev = GuestEvent(time=time.time(), vmid=vmid, node=node, type="qemu", phase="pre-start",
                        decision="hold", reason="bench: gate down", gates=["g"])  # fmt: skip
        out.append(Message(topics.guest_event(vmid), ev.to_json(), False, "bench"))
    return out


def cycles(tmp: Path, broker: str, n: int, rounds: int) -> list[tuple[float, int, float]]:
    """(RSS MiB, descriptors, seconds) after each hold/release cycle of `n` guests."""
    pve, probe = FakePve(n, 16), FakeProbe()
    cfg = config(tmp, broker, 64)
    svc = Coordinator(
        cfg,
        pve=pve,
        probes={"g": probe},
        notifier=FakeNotifier(),
        # A dedupe window of one cycle's events, full after the first cycle: its 65,536 ids by
        # default are some 10 MiB that would fill over 66 cycles and read as growth here.
        options=ServiceOptions(connect_wait_s=5.0, settle_quiet_s=0.1, dedupe_size=n),
    )
    topics = Topics(cfg.bus.topic_prefix, cfg.cluster)
    stop = threading.Event()
    thread = threading.Thread(target=svc.run, args=(stop,), daemon=True)
    thread.start()
    out: list[tuple[float, int, float]] = []
    try:
        if not wait(lambda: svc.loop.state.leader, 60.0):
            raise SystemExit("bench: the coordinator never led")
        for r in range(rounds):
            t0 = time.monotonic()
            probe.ok = False
            if not wait(lambda: not svc.loop.state.gates["g"].healthy, 30.0):
                raise SystemExit(f"bench: cycle {r}: the gate never went unhealthy")
            with pve.lock:
                pve.started.clear()  # every guest stopped again (a flap, a maintenance)
            for m in _refusals(topics, pve):
                svc.group.inbox.put(m)
            if not wait(lambda: len(svc.loop.state.held) == n, 120.0):
                raise SystemExit(f"bench: cycle {r}: {len(svc.loop.state.held)} of {n} starts held")
            probe.ok = True
            if not wait(lambda: len(pve.started) == n and not svc.loop.state.held, 120.0):
                raise SystemExit(f"bench: cycle {r}: {len(svc.loop.state.held)} starts still held")
            gc.collect()
            out.append((rss_mib(), fds(), time.monotonic() - t0))
    finally:
        stop.set()
        thread.join(30.0)
    return out


def main() -> None:
    """Measure and print the figures."""
    args = parse_args(__doc__ or "")
    n, rounds = (200, 3) if args.quick else (1000, 20)
    with tempfile.TemporaryDirectory() as tmp, MosquittoProcess(Path(tmp) / "mq") as broker:
        seen = cycles(Path(tmp), broker.url, n, rounds)
    # One sample of RSS moves by a few MiB with the allocator and the publisher's backlog, and a
    # sample can catch a socket or a state file open: compare the steady state of the first cycles
    # after the first (median RSS, fewest descriptors) with that of the last ones.
    k = max(1, min(5, (len(seen) - 1) // 2))
    early, late = seen[1 : 1 + k], seen[-k:]
    rss1, rss_n = median([r for r, _, _ in early]), median([r for r, _, _ in late])
    fd1, fd_n = min(f for _, f, _ in early), min(f for _, f, _ in late)
    per_cycle = sum(s for _, _, s in seen) / len(seen)
    emit(
        [
            Figure(f"coordinator: RSS growth over {rounds} hold/release cycles of {n:,}", rss_n - rss1, "MiB",
                   "<= 5 MiB", f"cycles 2-{1 + k}: {rss1:.1f} MiB (median); {per_cycle:.2f} s a cycle",
                   rss_n - rss1 <= 5),
            Figure(f"coordinator: descriptor growth over {rounds} cycles", fd_n - fd1, "fds", "0",
                   f"fewest open in cycles 2-{1 + k}: {fd1}", fd_n - fd1 <= 0),
        ],
        args.json,
    )  # fmt: skip


if __name__ == "__main__":
    main()
