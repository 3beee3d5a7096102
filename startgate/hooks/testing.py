"""Test doubles for the hook and the agent: a throwaway Mosquitto, a black hole, a fake controller.

- `Mosquitto`: a real broker on a free loopback port (optionally with a password file and an
  ACL), which can be stopped and started again on the same port (for broker-restart tests).
  The shared fixtures in tests/conftest.py supersede it where they fit; the hook's tests also
  need the restart and the ACL.
- `BlackHole`: a TCP server that accepts connections and never answers (the hang paho's
  `publish.single()` never returns from).
- `FakeLinstor`: an HTTP server answering `GET /health` with a settable status (or not at all).
- `RecordingNotifier`: a systemd Notifier that remembers what it was told.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Return once 127.0.0.1:port accepts connections (TimeoutError after `timeout`)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.02)  # noqa: TID251 - a test double waiting for a real broker process
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Mosquitto:
    """A Mosquitto broker on 127.0.0.1:<port>, started and stopped by the test."""

    def __init__(
        self, port: int | None = None, users: dict[str, str] | None = None, acl: str = "", unix: bool = False
    ) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="startgate-mosq-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.socket_path = self.dir / "mqtt.sock" if unix else None
        lines = [
            "user root",
            "per_listener_settings false",
            "persistence false",
            f"listener {self.port} 127.0.0.1",
        ]
        if self.socket_path is not None:
            lines.append(f"listener 0 {self.socket_path}")
        if users:
            pwfile = self.dir / "passwd"
            pwfile.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
            pwfile.chmod(0o600)
            binary = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
            subprocess.run([binary, "-U", str(pwfile)], check=True, capture_output=True)  # noqa: S603 - our own file
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        if acl:
            aclfile = self.dir / "acl"
            aclfile.write_text(acl)
            lines.append(f"acl_file {aclfile}")
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.log = self.dir / "mosquitto.log"

    @property
    def url(self) -> str:
        """The broker's URL as bus.brokers holds it."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        """Start the broker and wait until it accepts connections."""
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([binary, "-c", str(self.conf)], stdout=log, stderr=log)  # noqa: S603 - our conf
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL) and wait for it."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def close(self) -> None:
        """Stop the broker and remove its files."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class BlackHole:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, name="blackhole", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.conns.append(conn)  # kept open, never read, never answered

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self._stop.set()
        self.thread.join(2)
        for c in self.conns:
            c.close()
        self.sock.close()


class FakeLinstor:
    """An HTTP server on 127.0.0.1 whose `GET /health` answers `status` (or hangs if `hang`)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.hang = False
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                if outer.hang:
                    time.sleep(30)  # noqa: TID251 - simulates a controller that never answers
                    return
                code = outer.status if self.path == "/health" else 404
                body = b"{}"
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-linstor", daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        """The controller URL as a linstor check lists it."""
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


class RecordingNotifier:
    """A systemd Notifier that remembers what it was told."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def ready(self) -> None:
        """Record READY=1."""
        self.sent.append("READY=1")

    def status(self, text: str) -> None:
        """Record STATUS=."""
        self.sent.append("STATUS=" + text)

    def watchdog(self) -> None:
        """Record WATCHDOG=1."""
        self.sent.append("WATCHDOG=1")

    def stopping(self) -> None:
        """Record STOPPING=1."""
        self.sent.append("STOPPING=1")
