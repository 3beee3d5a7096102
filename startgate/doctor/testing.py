"""A tiny fake of the Proxmox API for doctor's tests: `GET /api2/json/access/permissions` only.

It answers like proxmox/pve-access-control `permissions` (path -> {privilege: 0|1}) for the
token in the `Authorization: PVEAPIToken=ID=SECRET` header, 401 for an unknown token or a wrong
secret (without real PVE's 3 s delay), 404 for anything else. Plain HTTP on loopback.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

Grants = dict[str, dict[str, int]]  # ACL path -> privilege -> propagate (0/1)


def grants_on_root(*privileges: str) -> Grants:
    """Privileges granted on `/` with propagation (how the coordinator's role is meant to be set)."""
    return {"/": dict.fromkeys(privileges, 1)}


class FakePveApi:
    """Serve the permissions endpoint for the given tokens: {token id: (secret, grants)}."""

    def __init__(self, tokens: dict[str, tuple[str, Grants]]) -> None:
        self.tokens = tokens
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
                """Stay quiet (tests read `requests` instead)."""

            def do_GET(self) -> None:
                fake.requests.append(self.path)
                status, body = fake.answer(self.path, self.headers.get("Authorization", ""))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A connection reset between select() and accept() would block a blocking accept, and
        # serve_forever with it, for good (shutdown() then waits forever); non-blocking, it is skipped.
        self._server.socket.setblocking(False)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        """The base URL to put in `proxmox.url`."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, path: str, auth: str) -> tuple[int, object]:
        """The status and JSON body for one GET."""
        parts = urlsplit(path)
        scheme, _, value = auth.partition("=")
        token_id, _, secret = value.rpartition("=")
        known = self.tokens.get(token_id)
        if scheme != "PVEAPIToken" or known is None or known[0] != secret:
            return 401, {"data": None, "message": "authentication failure"}
        if parts.path != "/api2/json/access/permissions":
            return 404, {"data": None, "message": f"Method 'GET {parts.path}' not implemented"}
        grants = known[1]
        only = parse_qs(parts.query).get("path")
        if only:
            return 200, {"data": {only[0]: grants[only[0]]} if only[0] in grants else {}}
        return 200, {"data": grants}

    def __enter__(self) -> FakePveApi:
        self._thread.start()
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)
