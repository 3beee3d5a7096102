"""The systemd adapter: sd_notify (READY=1, STATUS=, WATCHDOG=1, STOPPING=1) through sdnotify.

sdnotify connects to `$NOTIFY_SOCKET` once and silently does nothing when it is unset (a service
run by hand, or in tests). It does not read `$WATCHDOG_USEC`; `watchdog_interval()` does, and
returns half the watchdog timeout, as sd_watchdog_enabled(3) recommends. Services ping the
watchdog from their main loop, so a wedged loop trips it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol

import sdnotify

if TYPE_CHECKING:
    from collections.abc import Mapping


class Notifier(Protocol):
    """What a service tells its supervisor."""

    def ready(self) -> None:
        """Start-up is done (READY=1)."""

    def status(self, text: str) -> None:
        """A one-line status for `systemctl status` (STATUS=)."""

    def watchdog(self) -> None:
        """The main loop is alive (WATCHDOG=1)."""

    def stopping(self) -> None:
        """The service is shutting down (STOPPING=1)."""


class SystemdNotifier:
    """sd_notify through sdnotify; a no-op outside systemd."""

    def __init__(self) -> None:
        self._sd = sdnotify.SystemdNotifier()

    def _send(self, state: str) -> None:
        self._sd.notify(state)

    def ready(self) -> None:
        """Send READY=1."""
        self._send("READY=1")

    def status(self, text: str) -> None:
        """Send STATUS=<text> (one line)."""
        self._send("STATUS=" + text.replace("\n", " ")[:200])

    def watchdog(self) -> None:
        """Send WATCHDOG=1."""
        self._send("WATCHDOG=1")

    def stopping(self) -> None:
        """Send STOPPING=1."""
        self._send("STOPPING=1")


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Half of systemd's watchdog timeout (`$WATCHDOG_USEC`), or None when no watchdog is set."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdecimal() or int(usec) <= 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (a parent that exec'd us without clearing it)
    return int(usec) / 2_000_000
