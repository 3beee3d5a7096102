"""Shared fixtures: a real mosquitto on a free loopback port, and a unique topic prefix per test.

`session_broker` is one broker for the whole run (tests keep apart by their topic prefix);
`broker` is a fresh one per test with persistence on, for tests that kill or restart it.
A missing mosquitto binary fails the broker tests loudly: they are never skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from startgate.bus.broker import MosquittoProcess, find_binary
from startgate.bus.values import ClientSettings
from startgate.errors import BrokerProcessError


@pytest.fixture(scope="session")
def mosquitto_binary() -> str:
    """The mosquitto executable; fails (never skips) when it is not installed."""
    try:
        return find_binary()
    except BrokerProcessError as exc:
        pytest.fail(f"broker tests need mosquitto: {exc}", pytrace=False)


def _started(proc: MosquittoProcess) -> MosquittoProcess:
    try:
        return proc.start()
    except BrokerProcessError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def session_broker(
    tmp_path_factory: pytest.TempPathFactory, mosquitto_binary: str
) -> Iterator[MosquittoProcess]:
    """One anonymous mosquitto (TCP and a unix socket) shared by the whole test session."""
    proc = MosquittoProcess(tmp_path_factory.mktemp("mosquitto"), unix_socket=True, binary=mosquitto_binary)
    yield _started(proc)
    proc.stop()


@pytest.fixture
def broker(tmp_path: Path, mosquitto_binary: str) -> Iterator[MosquittoProcess]:
    """A mosquitto of this test's own, with persistence, that the test may kill and restart."""
    proc = MosquittoProcess(tmp_path / "mosquitto", persistence=True, binary=mosquitto_binary)
    yield _started(proc)
    proc.stop()


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix no other test uses (retained messages on the shared broker stay apart)."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def fast() -> ClientSettings:
    """Client settings with short timeouts and backoffs, so failure paths finish quickly."""
    return ClientSettings(keepalive_s=5, connect_timeout_s=1.0, reconnect_min_s=0.05, reconnect_max_s=0.5)
