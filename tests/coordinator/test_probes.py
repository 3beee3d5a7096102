"""Gate probes: LINSTOR /health on any url in order, /v1/nodes satellites, http and tcp checks."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from startgate import config as sg_config
from startgate.coordinator.probes import GateProbe, online_satellites

NODES = [
    {"name": "pve1", "type": "SATELLITE", "connection_status": "ONLINE"},
    {"name": "pve2", "type": "COMBINED", "connection_status": "ONLINE"},
    {"name": "pve3", "type": "SATELLITE", "connection_status": "OFFLINE"},
    {"name": "ctrl", "type": "CONTROLLER", "connection_status": "ONLINE"},
]


class Linstor:
    """A tiny LINSTOR-like server: /health status and /v1/nodes, recording Authorization headers."""

    def __init__(self, health: int = 200) -> None:
        self.health = health
        self.auth: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_a: object) -> None:
                return

            def do_GET(self) -> None:
                outer.auth.append(self.headers.get("Authorization"))
                if self.path == "/health":
                    body, status = b"", outer.health
                elif self.path == "/v1/nodes":
                    body, status = json.dumps(NODES).encode(), 200
                else:
                    body, status = b"[]", 404
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def linstor() -> Iterator[Linstor]:
    """A LINSTOR-like server on loopback."""
    s = Linstor()
    yield s
    s.close()


def _gate(check: dict[str, object]) -> sg_config.Gate:
    return sg_config.Gate.model_validate({"name": "g", "check": check, "storages": ["drbd"]})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_satellites_online_ignores_controllers() -> None:
    """ONLINE satellites and combined nodes count; controller-type nodes and OFFLINE ones do not."""
    assert online_satellites(NODES) == frozenset({"pve1", "pve2"})


def test_linstor_tries_urls_in_order_and_reads_nodes_with_the_token(linstor: Linstor, tmp_path: Path) -> None:
    """A dead first url is skipped; the answering controller's /v1/nodes is read with Bearer."""
    token = tmp_path / "tok"
    token.write_text("s3cret\n")
    dead = f"http://127.0.0.1:{_closed_port()}"
    probe = GateProbe(_gate({"kind": "linstor", "urls": [dead, linstor.url], "token_file": str(token)}))
    r = probe.probe()
    assert r.ok
    assert r.nodes_online == frozenset({"pve1", "pve2"})
    assert r.target == linstor.url + "/health"
    assert "Bearer s3cret" in linstor.auth
    assert r.latency_ms is not None


def test_linstor_500_is_unhealthy(linstor: Linstor) -> None:
    """/health 500 (database not loaded) is a failed probe that says so."""
    linstor.health = 500
    r = GateProbe(_gate({"kind": "linstor", "urls": [linstor.url]})).probe()
    assert not r.ok
    assert "HTTP 500" in r.detail


def test_http_and_tcp_checks(linstor: Linstor) -> None:
    """http: 2xx is healthy; tcp: a connect; a closed port is unhealthy with a reason."""
    assert GateProbe(_gate({"kind": "http", "url": linstor.url + "/health"})).probe().ok
    port = int(linstor.url.rsplit(":", 1)[1])
    assert GateProbe(_gate({"kind": "tcp", "host": "127.0.0.1", "port": port})).probe().ok
    r = GateProbe(_gate({"kind": "tcp", "host": "127.0.0.1", "port": _closed_port()})).probe()
    assert not r.ok
    assert "refused" in r.detail
