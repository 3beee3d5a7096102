"""Value types shared by the MQTT adapter and its users (no paho here, so anyone may import them).

A broker address parsed from a `bus.brokers` URL, the client settings built once from
`startgate.config.Bus`, a Last Will, the raw messages handed out by subscribers, and the bus
counters exposed for metrics and tests.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from startgate.config import Bus

Protocol = Literal["auto", "5", "3.1.1"]
_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class BrokerAddress:
    """One broker: `mqtt://host[:port]`, `mqtts://host[:port]` (TLS) or `unix:///path/to.sock`."""

    url: str
    host: str  # the socket path for unix://
    port: int  # 0 for unix://
    tls: bool
    transport: Literal["tcp", "unix"]

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """Parse a broker URL; ValueError names the URL when it is not one."""
        parts = urlsplit(url)
        if parts.scheme == "unix":
            if not parts.path:
                raise ValueError(f"broker {url!r}: a unix broker needs a socket path")
            return cls(url=url, host=parts.path, port=0, tls=False, transport="unix")
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"broker {url!r}: use mqtt://host[:port], mqtts://host[:port] or unix:///path")
        try:
            port = parts.port or _DEFAULT_PORTS[parts.scheme]
        except ValueError:
            raise ValueError(f"broker {url!r}: bad port") from None
        return cls(url=url, host=parts.hostname, port=port, tls=parts.scheme == "mqtts", transport="tcp")

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True)
class ClientSettings:
    """How every client reaches the brokers: protocol, auth, TLS, and its timing (all injectable)."""

    protocol: Protocol = "auto"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    keepalive_s: int = 30
    connect_timeout_s: float = 2.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0
    # How long the broker keeps a subscriber's session (and queues QoS 1 for it) while it is away.
    session_expiry_s: int = 7 * 24 * 3600

    @classmethod
    def from_config(cls, bus: Bus, **overrides: Any) -> ClientSettings:
        """Settings from the `[bus]` config section; the password is read from its 0600 file."""
        from startgate.config import read_secret  # noqa: PLC0415 - keep this module free of pydantic

        password = read_secret(bus.password_file, "bus.password_file") if bus.password_file else None
        base = cls(
            protocol=bus.protocol,
            username=bus.username,
            password=password,
            tls_ca=bus.tls_ca,
            tls_cert=bus.tls_cert,
            tls_key=bus.tls_key,
            keepalive_s=bus.keepalive_s,
            connect_timeout_s=bus.connect_timeout_s,
            reconnect_min_s=bus.reconnect_min_s,
            reconnect_max_s=bus.reconnect_max_s,
        )
        return dataclasses.replace(base, **overrides) if overrides else base


@dataclass(frozen=True)
class Will:
    """A Last Will: published by the broker when the client vanishes without a clean disconnect."""

    topic: str
    payload: bytes
    retain: bool = True


@dataclass(frozen=True)
class Message:
    """One message as received from a broker: raw bytes, not yet decoded or validated."""

    topic: str
    payload: bytes
    retain: bool
    broker: str


@dataclass(frozen=True)
class LinkUp:
    """A subscriber's link to `broker` came (back) up: republish retained state there if needed."""

    broker: str
    session_present: bool
    protocol: Literal["5", "3.1.1"]


Inbound = Message | LinkUp


@dataclass(frozen=True)
class BusCounters:
    """A snapshot of the bus counters (for metrics and tests)."""

    received: int = 0
    dropped_invalid: int = 0
    duplicates: int = 0
    connects: int = 0


class Counters:
    """Thread-safe bus counters shared by subscribers (network threads) and the validating loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = BusCounters()

    def add(
        self, *, received: int = 0, dropped_invalid: int = 0, duplicates: int = 0, connects: int = 0
    ) -> None:
        """Add to one or more counters."""
        with self._lock:
            v = self._values
            self._values = BusCounters(
                received=v.received + received,
                dropped_invalid=v.dropped_invalid + dropped_invalid,
                duplicates=v.duplicates + duplicates,
                connects=v.connects + connects,
            )

    def snapshot(self) -> BusCounters:
        """The current values."""
        with self._lock:
            return self._values
