"""The hook's own gate checks, for when no fresh retained gate health is on the bus.

- linstor: `GET <url>/health` answers 200 (LINSTOR answers 200 only when its database is loaded and
  all services run), trying the urls in order;
- http: `GET <url>` answers 2xx (or the configured status);
- tcp: a connect to host:port completes.

Every try is bounded by the check's own timeout and by the caller's deadline. HTTP is a bare
HTTP/1.1 request on a socket (only the status line is read): http.client costs ~20 ms to import,
and connections go through `startgate.bus.oneshot.dial`, which resolves names in a thread so a
hanging DNS cannot outlast the deadline. TLS (`https://`) loads ssl only when used;
`verify_tls = false` accepts self-signed certificates, as LINSTOR deployments commonly have.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, NamedTuple

from startgate.bus.oneshot import Deadline, dial

if TYPE_CHECKING:
    from startgate.hooks.settings import CheckSpec


class ProbeResult(NamedTuple):
    """The outcome of one gate check: healthy or not, and a short detail for people."""

    healthy: bool
    detail: str


class Url(NamedTuple):
    """An http(s) URL split into what a request needs."""

    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Url:
        """Split `http(s)://host[:port][/path]` (validated by the config model already)."""
        scheme, _, rest = url.partition("://")
        hostport, slash, path = rest.partition("/")
        hostport = hostport.rpartition("@")[2]
        default = 443 if scheme == "https" else 80
        if hostport.startswith("["):
            host, _, tail = hostport[1:].partition("]")
            port = tail[1:] if tail.startswith(":") else ""
        elif hostport.count(":") == 1:
            host, _, port = hostport.partition(":")
        else:
            host, port = hostport, ""
        return cls(scheme, host, int(port) if port.isdecimal() else default, slash + path or "/")

    @property
    def where(self) -> str:
        """`host:port`, as the task-log line names it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def http_status(url: Url, deadline: Deadline, verify_tls: bool) -> int:
    """The status code of `GET url` (raises OSError/TimeoutError when there is no answer in time)."""
    sock = dial(url.host, url.port, deadline)
    try:
        if url.scheme == "https":
            import ssl  # noqa: PLC0415 - only https checks pay for ssl

            ctx = ssl.create_default_context()
            if not verify_tls:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            sock.settimeout(max(0.001, deadline.remaining()))
            sock = ctx.wrap_socket(sock, server_hostname=url.host)
        host = f"[{url.host}]" if ":" in url.host else url.host
        request = (
            f"GET {url.path} HTTP/1.1\r\nHost: {host}:{url.port}\r\nUser-Agent: startgate-hook\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n"
        )
        sock.settimeout(max(0.001, deadline.remaining()))
        sock.sendall(request.encode())
        buf = b""
        while b"\r\n" not in buf and len(buf) < 4096:
            remaining = deadline.remaining()
            if remaining <= 0:
                raise TimeoutError("no answer in time")
            sock.settimeout(remaining)
            chunk = sock.recv(4096)
            if not chunk:
                break
            buf += chunk
        parts = buf.split(b"\r\n", 1)[0].split()
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise OSError(f"not an HTTP answer: {buf[:60]!r}")
        return int(parts[1])
    finally:
        sock.close()


def _why(exc: BaseException, where: str) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer from {where}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {where}"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return f"{where}: {text}"


def _http_check(check: CheckSpec, deadline: Deadline, suffix: str) -> ProbeResult:
    problems: list[str] = []
    urls = list(check.urls)
    for i, raw in enumerate(urls):
        url = Url.parse(raw.rstrip("/") + suffix if suffix else raw)
        share = deadline.within(min(check.timeout_s, deadline.remaining() / (len(urls) - i)))
        try:
            status = http_status(url, share, check.verify_tls)
        except (OSError, ValueError) as exc:
            problems.append(_why(exc, url.where))
            continue
        good = status == check.expect_status if check.expect_status else 200 <= status < 300
        if check.kind == "linstor":
            good = status == 200
        if good:
            return ProbeResult(True, f"HTTP {status} from {url.where}")
        problems.append(f"HTTP {status} from {url.where}")
    return ProbeResult(False, "; ".join(problems) or "no url to check")


def probe(check: CheckSpec, deadline: Deadline) -> ProbeResult:
    """Run one gate's check within `deadline`; never raises for an unreachable service."""
    if deadline.expired():
        return ProbeResult(False, "no time left to check")
    if check.kind == "linstor":
        return _http_check(check, deadline, "/health")
    if check.kind == "http":
        return _http_check(check, deadline, "")
    where = f"{check.host}:{check.port}"
    try:
        dial(check.host, check.port, deadline.within(check.timeout_s)).close()
    except OSError as exc:
        return ProbeResult(False, _why(exc, where))
    return ProbeResult(True, f"connected to {where}")
