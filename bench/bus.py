"""Bus figures on a private loopback mosquitto: PUBACK latency, publish-to-subscriber latency, and
how long a publish to a broker that never answers takes (bounded by its timeout)."""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

from bench.report import Figure, emit, median, parse_args
from startgate.bus.broker import MosquittoProcess
from startgate.bus.mqtt import ClientSettings, Message, Publisher, Subscriber
from startgate.bus.testing import BlackHole
from startgate.errors import BusError


def main() -> None:
    """Measure and print the figures."""
    args = parse_args(__doc__ or "")
    n = 20 if args.quick else 300
    settings = ClientSettings(connect_timeout_s=1.0, reconnect_min_s=0.1, reconnect_max_s=1.0)
    with tempfile.TemporaryDirectory() as tmp, MosquittoProcess(Path(tmp)) as broker:
        cold = []
        for _ in range(5):
            t0 = time.perf_counter()
            with Publisher([broker.url], settings) as once:
                once.publish("bench/cold", b"x")
            cold.append(time.perf_counter() - t0)
        sub = Subscriber(broker.url, settings, client_id="bench-sub", topics=["bench/#"], persistent=False)
        sub.start().wait_ready(5)
        puback, e2e = [], []
        with Publisher([broker.url], settings) as pub:
            pub.connect()
            for i in range(n):
                t0 = time.perf_counter()
                pub.publish("bench/e", str(i).encode())
                puback.append(time.perf_counter() - t0)
                while not isinstance(item := sub.get(5), Message):
                    if item is None:
                        raise SystemExit("bench: a message did not arrive")
                e2e.append(time.perf_counter() - t0)
        sub.stop()
    with BlackHole() as hole, Publisher([hole.url], settings) as stuck:
        t0 = time.perf_counter()
        with contextlib.suppress(BusError):
            stuck.publish("bench/x", b"x", timeout=0.5)
        hole_s = time.perf_counter() - t0
    ms = 1000.0
    emit(
        [
            Figure("bus: QoS 1 publish to PUBACK (warm link)", median(puback) * ms, "ms", "<= 5 ms",
                   f"connect+publish+close: {median(cold) * ms:.1f} ms", median(puback) * ms <= 5),
            Figure("bus: publish to subscriber delivery", median(e2e) * ms, "ms", "<= 10 ms", "",
                   median(e2e) * ms <= 10),
            Figure("bus: publish to a silent broker, timeout 0.5 s", hole_s, "s", "<= 0.6 s",
                   "paho publish.single: blocks forever", hole_s <= 0.6),
        ],
        args.json,
    )  # fmt: skip


if __name__ == "__main__":
    main()
