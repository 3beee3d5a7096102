"""A mosquitto child process on loopback: for the demo, the simulator and the broker tests.

`MosquittoProcess` writes its own config into a work directory (so the system broker's config is
never read), picks a free loopback port, starts `mosquitto -c`, waits until the listener accepts,
and stops, kills or restarts it on the same port. Known traps it handles (research §3.8):
started as root mosquitto switches to user `mosquitto` unless the config says `user root`, and
`-p` is ignored once the config has a listener, so the port goes into the config.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from startgate.errors import BrokerProcessError

log = logging.getLogger(__name__)

_SEARCH = ("/usr/sbin", "/sbin", "/usr/local/sbin")
_INSTALL_HINT = "install it (Debian: apt-get install mosquitto) or run `make venv` as root"


def find_binary(name: str = "mosquitto") -> str:
    """The path of a mosquitto tool (also looked up in sbin dirs), or BrokerProcessError."""
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SEARCH))
    if not found:
        raise BrokerProcessError(f"`{name}` not found on PATH or in {', '.join(_SEARCH)}: {_INSTALL_HINT}")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when a TCP connect to host:port completes."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str,
    port: int,
    timeout: float,
    *,
    alive: Callable[[], bool] | None = None,
    interval: float = 0.02,
) -> bool:
    """Poll until host:port accepts (True), `timeout` passes or `alive()` turns False (False)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        if port_accepts(host, port):
            return True
        if (alive is not None and not alive()) or time.monotonic() >= deadline:
            return False
        pause.wait(interval)


def write_password_file(path: Path, users: Mapping[str, str]) -> Path:
    """Write a mosquitto password file (hashed by `mosquitto_passwd -b`) with mode 0600."""
    tool = find_binary("mosquitto_passwd")
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    for user, password in users.items():
        # -b takes the password on the command line: fine for loopback test/demo brokers only.
        proc = subprocess.run(  # noqa: S603 - fixed tool path, arguments are not shell-parsed
            [tool, "-b", str(path), user, password], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise BrokerProcessError(f"mosquitto_passwd failed for user {user!r}: {proc.stderr.strip()}")
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class TlsFiles:
    """A TLS listener's files; `cafile` + `require_certificate` make clients present a cert."""

    certfile: Path
    keyfile: Path
    cafile: Path | None = None
    require_certificate: bool = False


class MosquittoProcess:
    """One mosquitto child listening on loopback (TCP, optionally also a unix socket)."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        unix_socket: bool = False,
        persistence: bool = False,
        autosave_interval_s: int = 60,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        tls: TlsFiles | None = None,
        allow_anonymous: bool | None = None,
        extra_config: Sequence[str] = (),
        start_timeout_s: float = 10.0,
        binary: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.host = host
        self._fixed_port = port
        self.port = port
        self.unix_socket = workdir / "mqtt.sock" if unix_socket else None
        self.persistence = persistence
        self.autosave_interval_s = autosave_interval_s
        self.password_file = password_file
        self.acl_file = acl_file
        self.tls = tls
        self.allow_anonymous = password_file is None if allow_anonymous is None else allow_anonymous
        self.extra_config = tuple(extra_config)
        self.start_timeout_s = start_timeout_s
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self.config_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        self.data_dir = workdir / "data"

    @property
    def url(self) -> str:
        """The broker URL as startgate's config spells it (mqtt:// or mqtts://)."""
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def unix_url(self) -> str:
        """The unix-socket broker URL (only when started with `unix_socket=True`)."""
        if self.unix_socket is None:
            raise BrokerProcessError("this mosquitto has no unix socket listener")
        return f"unix://{self.unix_socket}"

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        return self._proc.pid if self.running and self._proc else None

    @property
    def running(self) -> bool:
        """True while the child process has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def config_text(self) -> str:
        """The mosquitto.conf this process runs with."""
        lines = ["# written by startgate.bus.broker; the system broker's config is not read"]
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto drops to user `mosquitto` and cannot write here
        lines += [
            "per_listener_settings false",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "max_queued_messages 10000",
            # Small packets (PUBACKs) go out at once instead of waiting, under Nagle's algorithm,
            # for the ACK the client's kernel delays by 40 ms (see contrib/mosquitto).
            "set_tcp_nodelay true",
        ]
        if self.persistence:
            lines += [
                "persistence true",
                f"persistence_location {self.data_dir}/",
                f"autosave_interval {self.autosave_interval_s}",
            ]
        else:
            lines.append("persistence false")
        if self.password_file:
            lines.append(f"password_file {self.password_file}")
        if self.acl_file:
            lines.append(f"acl_file {self.acl_file}")
        lines.append(f"listener {self.port} {self.host}")
        if self.tls:
            lines += [f"certfile {self.tls.certfile}", f"keyfile {self.tls.keyfile}"]
            if self.tls.cafile:
                lines.append(f"cafile {self.tls.cafile}")
            if self.tls.require_certificate:
                lines.append("require_certificate true")
        if self.unix_socket:
            lines.append(f"listener 0 {self.unix_socket}")
        lines += list(self.extra_config)
        return "\n".join(lines) + "\n"

    def start(self) -> MosquittoProcess:
        """Start the child and wait until it accepts; a port lost to a race is re-picked (3 tries)."""
        if self.running:
            return self
        binary = self._binary or find_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.persistence:
            self.data_dir.mkdir(exist_ok=True)
        tries = 1 if self._fixed_port or self.port else 3
        for attempt in range(1, tries + 1):
            if not self.port:
                self.port = free_port(self.host)
            if self._spawn(binary):
                log.info("mosquitto pid %s listening on %s", self.pid, self.url)
                return self
            if attempt < tries and "Address already in use" in self.log_tail():
                log.info("port %s was taken meanwhile, picking another", self.port)
                self.port = 0
                continue
            break
        raise BrokerProcessError(
            f"mosquitto did not start listening on {self.host}:{self.port} within {self.start_timeout_s}s;"
            f" config {self.config_path}, log {self.log_path}:\n{self.log_tail()}"
        )

    def _spawn(self, binary: str) -> bool:
        if self.unix_socket:
            self.unix_socket.unlink(missing_ok=True)
        self.config_path.write_text(self.config_text(), encoding="utf-8")
        with self.log_path.open("ab") as logf:
            self._proc = subprocess.Popen(  # noqa: S603 - fixed binary, our own config file
                [binary, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=logf,
                start_new_session=True,  # a Ctrl-C in the terminal goes to us, and we stop it cleanly
            )
        ok = wait_for_port(self.host, self.port, self.start_timeout_s, alive=lambda: self.running)
        if ok and self.unix_socket is not None:
            deadline = time.monotonic() + self.start_timeout_s
            while not self.unix_socket.exists() and self.running and time.monotonic() < deadline:
                threading.Event().wait(0.02)
            ok = self.unix_socket.exists()
        if not ok:
            self._reap(signal.SIGKILL, 2.0)
        return ok

    def stop(self, timeout: float = 5.0) -> None:
        """Stop cleanly (SIGTERM: persistence is written), SIGKILL if it lingers past `timeout`."""
        self._reap(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Kill at once (SIGKILL), as a crash would: nothing is saved, clients see the link drop."""
        self._reap(signal.SIGKILL, 5.0)

    def restart(self, *, clean: bool = True) -> None:
        """Stop (SIGTERM when `clean`, else SIGKILL) and start again on the same port."""
        if clean:
            self.stop()
        else:
            self.kill()
        self._fixed_port = self.port
        self.start()

    def _reap(self, sig: signal.Signals, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("mosquitto pid %s ignored %s for %ss; killing it", proc.pid, sig.name, timeout)
                proc.kill()
                proc.wait(5.0)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the broker's log (for error messages)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> MosquittoProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
