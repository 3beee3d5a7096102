"""A simulated LINSTOR controller: one per gate VM, a real HTTP server on a loopback address, port 3370.

What it models (LINBIT/linstor-server):
- controller/.../api/rest/Health.java: `GET /health` is 200 with an empty body when the database is
  reachable and every system service runs, else 500 with `Services not running: <names>`. No auth.
- Controller.java: the REST server is the last thing started, so nothing listens (connection
  refused) while the controller VM is off; here it listens from the moment the VM runs and answers
  500 until the VM has run for the gate's `boot_s` (the database is loading).
- `GET /v1/nodes` (docs/rest_v1_openapi.yaml, schema Node): satellites turn `ONLINE` only after the
  controller reached them (ReconnectorTask retries every 10 s) and their node has been up a while;
  the controller VM itself is listed as a `CONTROLLER` node, shown OFFLINE (the old UG: "perfectly
  fine").
Each controller binds its own 127.x.y.z address on port 3370 so storage.cfg's `controller` option
can list plain addresses, as linstor-proxmox expects (it always appends :3370).
"""

from __future__ import annotations

import json
import logging
import random
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from startgate.sim.clock import SimClock

log = logging.getLogger(__name__)

LINSTOR_PORT = 3370


@dataclass(frozen=True)
class FlapWindow:
    """Between `from_s` and `until_s` the controller's health alternates every `period_s` (down first)."""

    from_s: float
    until_s: float
    period_s: float

    def down_at(self, t: float) -> bool:
        """True when the window forces /health to 500 at simulated time `t`."""
        if not self.from_s <= t < self.until_s:
            return False
        return int((t - self.from_s) / self.period_s) % 2 == 0


@dataclass
class ControllerState:
    """The controller's health as the sim decides it, updated by `tick`."""

    healthy: bool = False
    healthy_since: float | None = None
    listening: bool = False
    never_healthy: bool = False
    flaps: list[FlapWindow] = field(default_factory=list)
    online: set[str] = field(default_factory=set)


NodeUptimes = Callable[[], dict[str, float | None]]  # node -> simulated seconds up (None: down)


class LinstorController:
    """One gate's controller: health from its VM's run time, satellites from node uptimes."""

    def __init__(
        self,
        gate: str,
        vmid: int,
        *,
        clock: SimClock,
        vm_running_for: Callable[[], float | None],
        node_uptimes: NodeUptimes,
        boot_s: float,
        satellite_s: float,
        connect_s: float,
    ) -> None:
        self.gate = gate
        self.vmid = vmid
        self._clock = clock
        self._vm_running_for = vm_running_for
        self._node_uptimes = node_uptimes
        self.boot_s = boot_s
        self.satellite_s = satellite_s
        self.connect_s = connect_s
        self.state = ControllerState()
        self.address = "127.0.0.1"
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()

    @property
    def url(self) -> str:
        """The controller's base URL (http, port 3370)."""
        return f"http://{self.address}:{LINSTOR_PORT}"

    def pick_address(self) -> None:
        """Find a free 127.x.y.z with port 3370 (tests on one machine must not collide)."""
        rng = random.Random()  # noqa: S311 - an address, not a secret
        for _ in range(200):
            addr = f"127.{rng.randint(1, 254)}.{rng.randint(0, 254)}.{rng.randint(1, 254)}"
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((addr, LINSTOR_PORT))
                except OSError:
                    continue
            self.address = addr
            return
        raise OSError(f"no free loopback address with port {LINSTOR_PORT} for gate {self.gate}")

    def healthy_now(self) -> bool:
        """Whether /health answers 200 right now (the VM ran for boot_s, no fault forces 500)."""
        running_for = self._vm_running_for()
        if running_for is None or self.state.never_healthy or running_for < self.boot_s:
            return False
        t = self._clock.elapsed()
        return not any(f.down_at(t) for f in self.state.flaps)

    def tick(self) -> list[tuple[str, str]]:
        """Update listening, health and satellites; return transitions as (kind, detail) pairs."""
        changes: list[tuple[str, str]] = []
        with self._lock:
            want_listen = self._vm_running_for() is not None
            if want_listen != self.state.listening:
                self._listen() if want_listen else self._unlisten()
            healthy = self.healthy_now()
            now = self._clock.elapsed()
            if healthy != self.state.healthy:
                self.state.healthy = healthy
                self.state.healthy_since = now if healthy else None
                changes.append(("gate_healthy" if healthy else "gate_unhealthy", self.gate))
            online = set()
            if (
                healthy
                and self.state.healthy_since is not None
                and now - self.state.healthy_since >= self.connect_s
            ):
                for node, up_for in self._node_uptimes().items():
                    if up_for is not None and up_for >= self.satellite_s:
                        online.add(node)
            changes += [("satellite_online", n) for n in sorted(online - self.state.online)]
            self.state.online = online
        return changes

    def satellite_online(self, node: str) -> bool:
        """True when `node`'s satellite is ONLINE for this controller."""
        with self._lock:
            return node in self.state.online

    def nodes_json(self) -> list[dict[str, object]]:
        """The `GET /v1/nodes` answer."""
        with self._lock:
            online = set(self.state.online)
        out = [
            _node_entry(n, "SATELLITE", "ONLINE" if n in online else "OFFLINE")
            for n in sorted(self._node_uptimes())
        ]
        out.append(_node_entry(f"linstor-ctrl-{self.vmid}", "CONTROLLER", "OFFLINE"))
        return out

    def _listen(self) -> None:
        server = _QuietServer((self.address, LINSTOR_PORT), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"linstor-{self.gate}",
        )
        self._thread.start()
        self.state.listening = True

    def _unlisten(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._server = None
        self.state.listening = False

    def close(self) -> None:
        """Stop listening for good."""
        with self._lock:
            self._unlisten()


class _QuietServer(ThreadingHTTPServer):
    # Many starts probe /health at once after an outage; the default backlog of 5 drops SYNs.
    request_queue_size = 128

    def handle_error(self, _request: object, client_address: object) -> None:
        log.debug("linstor: connection from %s ended badly: %s", client_address, sys.exc_info()[1])


def _node_entry(name: str, typ: str, status: str) -> dict[str, object]:
    return {
        "name": name,
        "type": typ,
        "flags": [],
        "props": {"CurStltConnName": "default"},
        "net_interfaces": [
            {
                "name": "default",
                "address": "10.43.7.1",
                "satellite_port": 3366,
                "satellite_encryption_type": "PLAIN",
            }
        ],
        "connection_status": status,
        "uuid": f"00000000-0000-4000-8000-{abs(hash(name)) % 10**12:012d}",
    }


def _handler(ctrl: LinstorController) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
            log.debug("linstor %s: %s", ctrl.gate, format % args)

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            healthy = ctrl.healthy_now()
            if path == "/health":
                if healthy:
                    self._send(200, b"", "text/plain")
                else:
                    self._send(
                        500, b"Services not running: DbInitializer, ControllerNetComInitializer", "text/plain"
                    )
                return
            if not path.startswith("/v1/"):
                self._send(404, b'[{"ret_code":-4611686018427387904,"message":"Not found"}]')
                return
            if not healthy:
                self._send(500, b'[{"ret_code":-4611686018427387904,"message":"Controller not ready"}]')
                return
            if path == "/v1/nodes":
                self._send(200, json.dumps(ctrl.nodes_json()).encode())
            elif path == "/v1/controller/version":
                body = {
                    "version": "1.33.1",
                    "git_hash": "sim",
                    "build_time": "2026-01-01T00:00:00",
                    "rest_api_version": "1.27.0",
                }
                self._send(200, json.dumps(body).encode())
            else:
                self._send(404, b'[{"ret_code":-4611686018427387904,"message":"Not found"}]')

    return Handler
