"""Bus fakes and helpers for tests, the simulator and benchmarks (never used by the services).

- `BlackHole`: a loopback port that accepts TCP and never says a word (the case where paho's
  own `publish.single()` blocks forever).
- `V311OnlyProxy`: a proxy in front of a real broker that refuses MQTT v5 the way a 3.1.1-only
  broker does, to exercise the "auto" protocol fallback.
- `make_tls_files`: a throwaway CA, server and client certificate made with the `openssl` CLI.
- `collect`: drain a queue-like getter until enough items arrived or a deadline passed.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from startgate.errors import BrokerProcessError

log = logging.getLogger(__name__)
T = TypeVar("T")


def collect(
    get: Callable[[float], T | None],
    want: Callable[[list[T]], bool],
    timeout: float,
) -> list[T]:
    """Call `get(wait)` until `want(items)` holds or `timeout` passes; returns what arrived."""
    items: list[T] = []
    deadline = time.monotonic() + timeout
    while not want(items):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        item = get(min(remaining, 0.2))
        if item is not None:
            items.append(item)
    return items


class BlackHole:
    """A loopback TCP port whose backlog completes handshakes but which never reads or answers."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((host, 0))
        self._sock.listen(64)
        self.host = host
        self.port = int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        """The broker URL that points at the black hole."""
        return f"mqtt://{self.host}:{self.port}"

    def close(self) -> None:
        """Stop listening."""
        self._sock.close()

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _read_packet(conn: socket.socket) -> bytes:
    """One whole MQTT packet (fixed header, remaining length, body) from a blocking socket."""
    head = conn.recv(1)
    if not head:
        return b""
    raw = bytearray(head)
    length, mult = 0, 1
    while True:
        b = conn.recv(1)
        if not b:
            return b""
        raw += b
        length += (b[0] & 0x7F) * mult
        mult *= 128
        if not b[0] & 0x80:
            break
    body = bytearray()
    while len(body) < length:
        chunk = conn.recv(length - len(body))
        if not chunk:
            return b""
        body += chunk
    return bytes(raw + body)


class V311OnlyProxy:
    """Forwards loopback TCP to a real broker, but answers an MQTT v5 CONNECT as a 3.1.1-only
    broker does (CONNACK return code 1, "unacceptable protocol version", then close)."""

    def __init__(self, upstream_host: str, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self._sock.listen(16)
        self.host = host
        self.port = int(self._sock.getsockname()[1])
        self.refused_v5 = 0
        self._closed = False
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="v311-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The broker URL of the proxy."""
        return f"mqtt://{self.host}:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            first = _read_packet(conn)
            if not first:
                conn.close()
                return
            level = first[first.index(b"MQTT") + 4] if b"MQTT" in first[:16] else 0
            if level == 5:
                self.refused_v5 += 1
                conn.sendall(b"\x20\x02\x00\x01")
                conn.close()
                return
            up = socket.create_connection(self.upstream, timeout=5)
            up.settimeout(None)
            self._conns.append(up)
            up.sendall(first)
            threading.Thread(target=self._pump, args=(up, conn), daemon=True).start()
            self._pump(conn, up)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop accepting and cut every forwarded connection."""
        self._closed = True
        self._sock.close()
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.close()

    def __enter__(self) -> V311OnlyProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass(frozen=True)
class TlsMaterial:
    """A throwaway CA and the server and client certificates it signed (PEM files)."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    tool = shutil.which("openssl")
    if tool is None:
        raise BrokerProcessError("`openssl` not found on PATH (Debian: apt-get install openssl)")
    proc = subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, check=False)  # noqa: S603 - fixed tool, no shell
    if proc.returncode != 0:
        raise BrokerProcessError(f"openssl {args[0]} failed: {proc.stderr.strip()[-500:]}")


def make_tls_files(directory: Path, *, hostnames: tuple[str, ...] = ("localhost",)) -> TlsMaterial:
    """Make a CA, a server cert for 127.0.0.1 and `hostnames`, and a client cert (EC P-256, 2 days)."""
    directory.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-days", "2", "-subj", "/CN=startgate test CA",
        "-keyout", "ca.key", "-out", "ca.crt",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    sans = ",".join(["IP:127.0.0.1", *(f"DNS:{h}" for h in hostnames)])
    for name, usage, san in (("server", "serverAuth", sans), ("client", "clientAuth", "")):
        ext = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={usage}",
            "subjectKeyIdentifier=hash",
            "authorityKeyIdentifier=keyid,issuer",
        ]
        if san:
            ext.append(f"subjectAltName={san}")
        (directory / f"{name}.ext").write_text("\n".join(ext) + "\n", encoding="utf-8")
        _openssl(
            "req",
            *ec,
            "-subj",
            f"/CN=startgate-{name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            cwd=directory,
        )
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext",
            cwd=directory,
        )  # fmt: skip
    for key in directory.glob("*.key"):
        key.chmod(0o600)
    return TlsMaterial(
        ca_cert=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )
