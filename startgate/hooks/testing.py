"""Test doubles for the hook and the agent (brokers and black holes: startgate.bus.broker/testing).

- `FakeLinstor`: an HTTP server answering `GET /health` with a settable status (or not at all).
- `RecordingNotifier`: a systemd Notifier that remembers what it was told.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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
        self.server.socket.setblocking(False)  # see startgate.doctor.testing: no accept() that hangs
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
