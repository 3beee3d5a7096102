"""Fakes for testing the CLI's bus commands (never used by the CLI itself).

- `FakeCoordinator`: listens on `cmd/+` and answers each valid `Command` on
  `coordinator/reply/<request id>` with whatever its `answer` function returns (None: stay
  silent, like a cluster without a coordinator). It records the commands it saw.
- `publish_retained`: put retained messages on a broker (the state `status` and `queue` read).
- `fake_pvesh`: a `pvesh` for PATH that records its argv and edits the guest configs like the
  real one would (for `attach` / `detach`).
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType

from startgate.bus import messages as m
from startgate.bus.inbox import Received, ValidatingInbox
from startgate.bus.mqtt import ClientSettings, Publisher, Subscriber
from startgate.bus.topics import Topics

Answer = Callable[[m.Command], m.Reply | None]


def reply_to(cmd: m.Command, items: Iterable[m.ReplyItem], *, ok: bool = True, message: str = "") -> m.Reply:
    """A Reply to `cmd` with the given items, as the coordinator would send it."""
    return m.Reply(
        time=time.time(),
        request_id=cmd.event_id,
        ok=ok,
        message=message,
        items=list(items),
        node="pve2",
    )


def released_all(cmd: m.Command) -> m.Reply:
    """An answer that says every named VMID was released (dropped, for drop)."""
    outcome = "dropped" if cmd.verb == "drop" else ("ticket" if cmd.force else "released")
    items = [m.ReplyItem(vmid=v, outcome=outcome) for v in cmd.vmids]
    return reply_to(cmd, items, message=f"{cmd.verb}: {len(items)} of {len(items)} done")


class FakeCoordinator:
    """Answers commands on one broker from a background thread; use as a context manager."""

    def __init__(self, url: str, topics: Topics, settings: ClientSettings, answer: Answer = released_all):
        self.topics = topics
        self.answer = answer
        self.commands: list[m.Command] = []
        self._sub = Subscriber(
            url,
            settings,
            client_id=f"fake-coordinator-{uuid.uuid4().hex[:8]}",
            topics=[topics.all_commands],
            persistent=False,
        )
        self._inbox = ValidatingInbox(self._sub.get, topics)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-coordinator", daemon=True)

    def __enter__(self) -> FakeCoordinator:
        self._sub.start()
        self._sub.wait_ready(5.0)
        self._thread.start()
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self._sub.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._inbox.get(0.1)
            if not isinstance(item, Received) or not isinstance(item.message, m.Command):
                continue
            cmd = item.message
            self.commands.append(cmd)
            reply = self.answer(cmd)
            if reply is not None:
                self._sub.publish(self.topics.reply(cmd.event_id), reply.to_json(), timeout=5.0)


def publish_retained(url: str, topics: Topics, settings: ClientSettings, msgs: Iterable[m.Message]) -> None:
    """Publish each message retained on its topic (QoS 1, acknowledged)."""
    with Publisher([url], settings) as pub:
        for msg in msgs:
            pub.publish(topic_of(topics, msg), msg.to_json(), retain=True)


def topic_of(topics: Topics, msg: m.Message) -> str:
    """The topic a state message is published on."""
    if isinstance(msg, m.GateHealth):
        return topics.gate_health(msg.gate)
    if isinstance(msg, m.HeldStart):
        return topics.held(msg.vmid)
    if isinstance(msg, m.NodeStatus):
        return topics.node_status(msg.node)
    if isinstance(msg, m.Ticket):
        return topics.ticket(msg.vmid)
    if isinstance(msg, m.CoordinatorStatus):
        return topics.coordinator_status()
    raise TypeError(f"{type(msg).__name__} is not retained state")


_FAKE_PVESH = '''#!{python}
"""A fake pvesh: records its argv, then applies `set .../config --hookscript X | --delete hookscript`."""
import json, os, sys
from pathlib import Path

argv = sys.argv[1:]
with open({log!r}, "a") as f:
    f.write(json.dumps(argv) + "\\n")
if len(argv) < 2 or argv[0] != "set":
    sys.exit(2)
parts = argv[1].strip("/").split("/")  # nodes <node> <qemu|lxc> <vmid> config
if os.environ.get("FAKE_PVESH_FAIL") == parts[3]:
    print("500 unable to set hookscript: simulated failure", file=sys.stderr)
    sys.exit(255)
sub = "qemu-server" if parts[2] == "qemu" else "lxc"
conf = Path({config_dir!r}) / "nodes" / parts[1] / sub / (parts[3] + ".conf")
lines = [ln for ln in conf.read_text().splitlines() if not ln.startswith("hookscript:")]
if "--hookscript" in argv:
    lines.append("hookscript: " + argv[argv.index("--hookscript") + 1])
conf.write_text("\\n".join(lines) + "\\n")
'''


def fake_pvesh(bin_dir: Path, log: Path, config_dir: Path) -> Path:
    """Install a fake `pvesh` in `bin_dir` that logs its argv (JSON lines in `log`) and edits the configs.

    `$FAKE_PVESH_FAIL=<vmid>` makes it fail for that guest the way pvesh reports an API error.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "pvesh"
    path.write_text(_FAKE_PVESH.format(python=sys.executable, log=str(log), config_dir=str(config_dir)))
    path.chmod(0o755)
    return path


def pvesh_calls(log: Path) -> list[list[str]]:
    """The argv of every fake pvesh call so far."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]
