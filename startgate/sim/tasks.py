"""Proxmox tasks: UPIDs in the real format, task logs, status and exit status, the task list.

UPID: proxmox/pve-common src/PVE/UPID.pm `encode`: `UPID:%s:%08X:%08X:%08X:%s:%s:%s:` (node, pid,
pstart, starttime, type, id, user), trailing colon included. Exit status as `read_status` derives it
from the last log line: `OK`, `WARNINGS: n` or the error text after `TASK ERROR: `. A worker's error
has its newlines turned into spaces, as fork_worker does (pve-common src/PVE/RESTEnvironment.pm).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from startgate.sim.clock import SimClock

log = logging.getLogger(__name__)

# proxmox/pve-common src/PVE/UPID.pm `decode`.
_UPID = re.compile(
    r"^UPID:([a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):"
    r"([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$"
)
# proxmox/pve-access-control `pve_verify_tokenid`: user@realm!tokenid.
_TOKEN_USER = re.compile(r"^(\S+@\S+)!([A-Za-z][A-Za-z0-9._-]*)$")


class TaskError(Exception):
    """A task worker failed; the message becomes the task's exit status."""


@dataclass(frozen=True)
class Upid:
    """The fields of a UPID."""

    node: str
    pid: int
    pstart: int
    starttime: int
    type: str
    id: str
    user: str

    def encode(self) -> str:
        """The UPID string (pve-common UPID.pm `encode`)."""
        return (
            f"UPID:{self.node}:{self.pid:08X}:{self.pstart:08X}:{self.starttime:08X}:"
            f"{self.type}:{self.id}:{self.user}:"
        )

    @classmethod
    def decode(cls, upid: str) -> Upid | None:
        """Parse a UPID, or None when it does not match the real pattern."""
        m = _UPID.match(upid)
        if not m:
            return None
        node, pid, pstart, start, typ, ident, user = m.groups()
        return cls(node, int(pid, 16), int(pstart, 16), int(start, 16), typ, ident, user)


@dataclass
class Task:
    """A running or finished task and its log."""

    upid: Upid
    lines: list[str] = field(default_factory=list)
    endtime: int | None = None
    exitstatus: str | None = None
    step: str = ""  # what the worker is doing now (e.g. "hook pre-start"), for stall reports
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def text(self) -> str:
        """The UPID string."""
        return self.upid.encode()

    @property
    def running(self) -> bool:
        """True until the worker finished."""
        return not self.done.is_set()

    @property
    def failed(self) -> bool:
        """True when finished with an error (pve-common UPID.pm `status_is_error`)."""
        s = self.exitstatus
        return s is not None and not (s == "OK" or re.fullmatch(r"WARNINGS: \d+", s) is not None)

    def log(self, line: str) -> None:
        """Append lines to the task log."""
        self.lines.extend(line.rstrip("\n").split("\n"))

    def as_json(self) -> dict[str, object]:
        """The fields `GET /nodes/{node}/tasks/{upid}/status` returns (pve-manager PVE/API2/Tasks.pm)."""
        u = self.upid
        out: dict[str, object] = {
            "upid": self.text,
            "node": u.node,
            "pid": u.pid,
            "pstart": u.pstart,
            "starttime": u.starttime,
            "type": u.type,
            "id": u.id,
            "user": u.user,
            "status": "running" if self.running else "stopped",
        }
        # Tasks.pm `$convert_token_task`: a token's tasks show user and tokenid apart.
        m = _TOKEN_USER.match(u.user)
        if m:
            out["user"], out["tokenid"] = m.group(1), m.group(2)
        if not self.running:
            out["exitstatus"] = self.exitstatus
        return out


Worker = Callable[[Task], None]


class TaskManager:
    """Creates tasks, runs each worker in its own thread, keeps every task for the task list."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tasks: dict[str, Task] = {}
        self._pids: dict[str, int] = {}
        self._threads: list[threading.Thread] = []

    def start(self, node: str, typ: str, ident: str, user: str, *, worker: Worker, uptime_s: float) -> Task:
        """Fork a worker (a thread) and return its task at once, like RESTEnvironment `fork_worker`."""
        with self._lock:
            pid = self._pids.get(node, 2000 + 97 * len(self._pids)) + 1
            self._pids[node] = pid
            # pstart is in clock ticks (100 Hz) since the node booted, as /proc/<pid>/stat has it.
            upid = Upid(node, pid, int(uptime_s * 100), int(self._clock.now()), typ, ident, user)
            task = Task(upid)
            self._tasks[task.text] = task
        t = threading.Thread(target=self._run, args=(task, worker), name=f"task-{typ}-{ident}", daemon=True)
        with self._lock:
            self._threads.append(t)
        t.start()
        return task

    def _run(self, task: Task, worker: Worker) -> None:
        try:
            worker(task)
        except TaskError as exc:
            self._finish(task, str(exc))
        except Exception as exc:  # a bug in the sim must still end the task visibly
            log.exception("simulated task %s crashed", task.text)
            self._finish(task, f"internal simulator error: {exc}")
        else:
            self._finish(task, None)

    def _finish(self, task: Task, error: str | None) -> None:
        if error is None:
            task.exitstatus = "OK"
            task.log("TASK OK")
        else:
            msg = " ".join(error.strip().split("\n"))
            task.exitstatus = msg
            task.log(f"TASK ERROR: {msg}")
        task.endtime = int(self._clock.now())
        task.done.set()

    def get(self, upid: str) -> Task | None:
        """The task with this UPID, if the sim made it."""
        with self._lock:
            return self._tasks.get(upid)

    def all(self, node: str | None = None) -> list[Task]:
        """Every task (of one node), newest first, as the task index lists them."""
        with self._lock:
            tasks = [t for t in self._tasks.values() if node is None or t.upid.node == node]
        return sorted(tasks, key=lambda t: (t.upid.starttime, t.upid.pid), reverse=True)

    def running(self) -> list[Task]:
        """The tasks still running."""
        with self._lock:
            return [t for t in self._tasks.values() if t.running]

    def join(self, timeout: float) -> None:
        """Wait (real seconds in total) for worker threads to end."""
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(timeout=timeout / max(1, len(threads)))
