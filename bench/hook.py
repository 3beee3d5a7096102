"""Hookscript wall time, whole process, as Proxmox runs it (the snippet, argv <vmid> <phase>).

Figures (median of >= 20 runs each), beside a bare interpreter measured in the same run:
- pre-start of a gate member whose gate is healthy (fresh retained health), broker up;
- pre-start of a guest that is a member of no gate, broker up;
- pre-start of a member while broker and controller both accept TCP and never answer.

Runs on its own (`python bench/hook.py`): it starts a private mosquitto, a fake LINSTOR
controller and two black holes on loopback, and writes a node's files into a temporary folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/hook.py`: make `bench` and `startgate` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import Figure, emit, median, parse_args
from startgate.bus import messages
from startgate.bus.broker import MosquittoProcess
from startgate.bus.oneshot import BrokerAddress, Deadline, LinkOptions, Outgoing, connect_first
from startgate.bus.testing import BlackHole
from startgate.bus.topics import Topics
from startgate.hooks.snippet import snippet_text
from startgate.hooks.testing import FakeLinstor

MEMBER = "name: web1\nscsi0: drbdstorage:vm-101-disk-1,size=32G\nstartup: order=2\n"
OTHER = "name: plain\nscsi0: local-lvm:vm-102-disk-0,size=8G\n"
MS = 1000.0


def write_node(root: Path, broker: str, controller: str) -> tuple[Path, dict[str, str]]:
    """A node's files: guest configs, startgate.toml, the snippet; the hook's environment."""
    conf_dir = root / "pve" / "nodes" / "pve1" / "qemu-server"
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "101.conf").write_text(MEMBER)
    (conf_dir / "102.conf").write_text(OTHER)
    config = root / "startgate.toml"
    config.write_text(
        f"""cluster = "bench"
node = "pve1"
[bus]
brokers = ["{broker}"]
[proxmox]
config_dir = "{root / "pve"}"
[[gates]]
name = "linstor"
vmid = 100
check = {{ kind = "linstor", urls = ["{controller}"], timeout_s = 1.0 }}
storages = ["drbdstorage"]
[hook]
max_seconds = 3.0
spool_dir = "{root / "spool"}"
health_max_age_s = 3600
[coordinator]
state_dir = "{root / "state"}"
"""
    )
    snippet = root / "startgate-hook"
    snippet.write_text(snippet_text())
    snippet.chmod(0o755)
    env = {
        "PATH": "/sbin:/bin:/usr/sbin:/usr/bin",
        "LC_ALL": "C",
        "STARTGATE_CONFIG": str(config),
        "STARTGATE_CACHE_DIR": str(root / "cache"),
    }
    return snippet, env


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall time of one process, start to exit, with stdin closed; and its exit code."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    return time.perf_counter() - t0, proc.returncode


def runs(cmd: list[str], n: int, env: dict[str, str] | None = None, expect: int | None = None) -> list[float]:
    """`n` timed runs (after one warm-up run); stops with a message if an exit code is unexpected."""
    timed(cmd, env)
    out = []
    for _ in range(n):
        took, code = timed(cmd, env)
        if expect is not None and code != expect:
            raise SystemExit(f"bench: {' '.join(cmd)} exited {code}, expected {expect}")
        out.append(took)
    return out


def publish_health(broker: str) -> None:
    """A fresh retained 'healthy' for the linstor gate."""
    now = time.time()
    health = messages.GateHealth(gate="linstor", healthy=True, since=now, checked_at=now, detail="bench")
    conn = connect_first(LinkOptions(brokers=(BrokerAddress.parse(broker),)), Deadline(5))
    conn.publish(
        [Outgoing(Topics("startgate", "bench").gate_health("linstor"), health.to_json(), True)], Deadline(5)
    )
    conn.close()


def main() -> None:
    """Measure and print the figures."""
    args = parse_args(__doc__ or "")
    n = 20 if args.quick else 30
    python = sys.executable
    bare = median(runs([python, "-c", "pass"], n))
    bare_is = median(runs([python, "-I", "-S", "-c", "pass"], n))
    baseline = f"{Path(python).name} -c pass: {bare * MS:.0f} ms (-I -S: {bare_is * MS:.0f} ms)"
    with tempfile.TemporaryDirectory() as tmp, MosquittoProcess(Path(tmp) / "mosquitto") as broker:
        controller = FakeLinstor(200)
        try:
            snippet, env = write_node(Path(tmp) / "up", broker.url, controller.url)
            publish_health(broker.url)
            member = median(runs([str(snippet), "101", "pre-start"], n, env, expect=0))
            other = median(runs([str(snippet), "102", "pre-start"], n, env, expect=0))
            if controller.requests:
                raise SystemExit(
                    "bench: the member run asked the controller; the retained health was not used"
                )
        finally:
            controller.close()
        with BlackHole() as broker_hole, BlackHole() as controller_hole:
            snippet, env = write_node(
                Path(tmp) / "down", broker_hole.url, f"http://127.0.0.1:{controller_hole.port}"
            )
            timed([str(snippet), "102", "post-start"], env)  # validate and cache the config once
            cmd = [str(snippet), "101", "pre-start"]
            with ThreadPoolExecutor(max_workers=5) as pool:  # the runs mostly wait: overlap them
                worst_runs = list(pool.map(lambda _i: timed(cmd, env), range(n)))
            if any(code != 1 for _t, code in worst_runs):
                raise SystemExit(
                    f"bench: worst-case runs exited {sorted({c for _t, c in worst_runs})}, expected 1"
                )
            spooled = len(list((Path(tmp) / "down" / "spool").glob("*.json")))
            worst = median([t for t, _c in worst_runs])
            worst_max = max(t for t, _c in worst_runs)
    emit(
        [
            Figure("hook: pre-start, member, gate healthy, broker up", member * MS, "ms", "<= 100 ms",
                   baseline, member * MS <= 100),
            Figure("hook: pre-start, not a member, broker up", other * MS, "ms", "<= 60 ms",
                   baseline, other * MS <= 60),
            Figure("hook: pre-start, broker + controller never answer", worst, "s", "<= 3.2 s",
                   f"max {worst_max:.2f} s of {n}; {spooled} messages spooled; paho single(): forever",
                   worst <= 3.2 and worst_max <= 3.2),
        ],
        args.json,
    )  # fmt: skip
    if not args.json:
        print(json.dumps({"runs": n, "python": python, "cpu_count": os.cpu_count()}))


if __name__ == "__main__":
    main()
