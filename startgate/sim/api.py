"""The simulated Proxmox API server: HTTPS on loopback, `/api2/json`, real-shaped answers and errors.

Answers are `{"data": ...}`; errors carry the HTTP status, the message as reason phrase and
`{"data": null, "message": "<msg>\\n"}` (plus `errors` for parameter failures), as
proxmox/pve-http-server src/PVE/APIServer/Formatter/Standard.pm `prepare_response_data` builds
them for the json format. Unauthenticated calls get 401 after a 3 s (simulated) delay. A node that
is down cannot answer calls proxied to it (595). The certificate is self-signed, made with the
`openssl` CLI; without openssl the server speaks plain HTTP and says so in the log.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import ssl
import subprocess
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from startgate.sim import api_ha, api_routes
from startgate.sim.acl import ApiError, ApiToken
from startgate.sim.api_routes import Request

if TYPE_CHECKING:
    from startgate.sim.cluster import SimCluster

log = logging.getLogger(__name__)

BASE = "/api2/json"
ROUTES = api_routes.ROUTES + api_ha.ROUTES
AUTH_FAIL_DELAY_S = 3.0


@dataclass(frozen=True)
class ApiFault:
    """Between from_s and until_s, calls whose path matches `path` get `status` after `delay_s`."""

    from_s: float
    until_s: float
    status: int
    delay_s: float
    path: str

    def applies(self, t: float, path: str) -> bool:
        """True when this fault hits a call to `path` at simulated time `t`."""
        return self.from_s <= t < self.until_s and re.search(self.path, path) is not None


def make_cert(directory: Path) -> tuple[Path, Path] | None:
    """A self-signed certificate for 127.0.0.1 via the openssl CLI; None when openssl is missing."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "pve-ssl.pem", directory / "pve-ssl.key"
    cmd = [
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, check=False)  # noqa: S603 - fixed argv, openssl from PATH
    if done.returncode != 0:
        log.warning("openssl could not make a certificate: %s", done.stderr.decode(errors="replace").strip())
        return None
    return cert, key


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    ssl_context: ssl.SSLContext | None = None

    def handle_error(self, _request: object, client_address: object) -> None:
        # A client that hangs up (a test timing out, a killed hook) is not the server's problem.
        log.debug("api: connection from %s ended badly: %s", client_address, sys.exc_info()[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the request's thread, so a slow client blocks nobody.
        if self.ssl_context is not None:
            try:
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)


class ApiServer:
    """Serves the simulated cluster's API on 127.0.0.1 (random port)."""

    def __init__(self, cluster: SimCluster) -> None:
        self._c = cluster
        self.faults: list[ApiFault] = []
        self.cert_file: Path | None = None
        self._server: _Server | None = None
        self.base_url = ""

    def start(self, tls_dir: Path | None) -> None:
        """Bind and serve; TLS when `tls_dir` is given and openssl works."""
        server = _Server(("127.0.0.1", 0), _handler(self._c, self))
        scheme = "http"
        if tls_dir is not None:
            made = make_cert(tls_dir)
            if made is None:
                log.warning("openssl is not available: the simulated Proxmox API speaks plain HTTP")
            else:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(made[0], made[1])
                server.ssl_context = ctx
                self.cert_file = made[0]
                scheme = "https"
        self._server = server
        self.base_url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="sim-api"
        ).start()

    def close(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _handler(cluster: SimCluster, api: ApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
            log.debug("api: %s", format % args)

        def _reply(self, status: int, reason: str, body: bytes) -> None:
            self.send_response(status, reason.split("\n", 1)[0])
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, err: ApiError) -> None:
            payload: dict[str, Any] = {"data": None, "message": err.message.rstrip("\n") + "\n"}
            if err.errors:
                payload["errors"] = err.errors
            self._reply(err.status, err.message, json.dumps(payload).encode())

        def _params(self) -> dict[str, str]:
            query = urlsplit(self.path).query
            params = dict(parse_qsl(query, keep_blank_values=True))
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                raw = self.rfile.read(length).decode("utf-8", "replace")
                if (self.headers.get("Content-Type") or "").startswith("application/json"):
                    data = json.loads(raw or "{}")
                    params |= {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
                else:
                    params |= dict(parse_qsl(raw, keep_blank_values=True))
            return params

        def _dispatch(self, method: str) -> None:
            path = unquote(urlsplit(self.path).path)
            try:
                params = self._params()
            except (ValueError, UnicodeDecodeError):
                self._error(
                    ApiError(400, "Parameter verification failed.", {"body": "cannot parse request body"})
                )
                return
            if not path.startswith(BASE):
                self._error(ApiError(501, "no such uri"))
                return
            rel = path[len(BASE) :] or "/"
            token = self._auth()
            if token is None:
                return
            for fault in list(api.faults):
                if fault.applies(cluster.clock.elapsed(), rel):
                    cluster.clock.sleep(fault.delay_s)
                    self._error(ApiError(fault.status, "simulated failure (fault injected)"))
                    return
            for route_method, pattern, fn in ROUTES:
                m = pattern.fullmatch(rel.rstrip("/") or "/")
                if m and route_method == method:
                    try:
                        data = fn(cluster, Request(method, rel, params, token), *m.groups())
                    except ApiError as err:
                        self._error(err)
                        return
                    self._reply(200, "OK", json.dumps({"data": data}).encode())
                    return
            self._error(ApiError(501, f"Method '{method} {rel}' not implemented"))

        def _auth(self) -> ApiToken | None:
            header = self.headers.get("Authorization")
            token = cluster.acl.authenticate(header)
            if token is not None:
                return token
            cluster.clock.sleep(AUTH_FAIL_DELAY_S)
            reason = "No ticket" if not header else "Authentication failed!"
            self.send_response(401, reason)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_PUT(self) -> None:
            self._dispatch("PUT")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

    return Handler
