"""A Mosquitto child process on a free loopback port, for `startgate demo` when no broker is configured.

The config file carries the listener, since Mosquitto ignores `-p` once a config has one (design.md).
A missing binary is a clear error naming the Debian package.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from startgate.errors import SimError

CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto")


def find_mosquitto() -> str:
    """The mosquitto binary; SimError naming the package when there is none."""
    for c in CANDIDATES:
        found = shutil.which(c)
        if found:
            return found
    raise SimError(
        "mosquitto is not installed: install the Debian package 'mosquitto' (apt-get install mosquitto), "
        "or name a running broker in bus.brokers of the startgate config"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class MosquittoChild:
    """Runs `mosquitto -c <conf>` on 127.0.0.1:<free port>; `stop()` and `start()` again for outages."""

    def __init__(self, workdir: Path) -> None:
        self._dir = workdir
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The broker URL for bus.brokers."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 5.0) -> None:
        """Start the broker (same port on a restart) and wait until it accepts connections."""
        binary = find_mosquitto()
        self._dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        conf = self._dir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n",
            encoding="utf-8",
        )
        log = (self._dir / "mosquitto.log").open("ab")
        self._proc = subprocess.Popen(  # noqa: S603 - our own config, binary found on PATH
            [binary, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise SimError(
                    f"mosquitto exited with {self._proc.returncode}; see {self._dir / 'mosquitto.log'}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise SimError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {timeout_s} s")

    @property
    def running(self) -> bool:
        """True while the child runs."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Stop the child (terminate, then kill)."""
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def __enter__(self) -> MosquittoChild:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
