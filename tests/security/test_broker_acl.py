"""contrib/mosquitto: the shipped broker config and ACL, run by a real Mosquitto, refuse what they should."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from startgate.bus.broker import find_binary, free_port, wait_for_port, write_password_file
from startgate.bus.mqtt import Publisher
from startgate.bus.testing import make_tls_files
from startgate.bus.topics import Topics
from startgate.bus.values import ClientSettings
from startgate.cli import app
from startgate.commands.testing import FakeCoordinator
from startgate.errors import BrokerUnavailableError, NotAuthorizedError

CONTRIB = Path(__file__).parents[2] / "contrib" / "mosquitto"
USERS = {
    "pve1": "pw-pve1",
    "pve2": "pw-pve2",
    "startgate-coordinator": "pw-coord",
    "startgate-admin": "pw-admin",
}


@dataclass(frozen=True)
class LockedBroker:
    """The contrib broker running on free loopback ports (plain and TLS)."""

    plain: str
    tls: str
    ca: Path


def localise(conf: str, etc: Path, persist: Path, ports: tuple[int, int]) -> str:
    """The contrib config with only its file paths and listener ports moved into the test's tmp dir."""
    out = conf.replace("/etc/mosquitto/startgate/", f"{etc}/").replace("/var/lib/mosquitto/", f"{persist}/")
    out = out.replace("listener 1883 127.0.0.1", f"listener {ports[0]} 127.0.0.1")
    out = re.sub(r"(?m)^listener 8883$", f"listener {ports[1]} 127.0.0.1", out)
    return out + "user root\n"  # only because the tests run as root; the real broker drops to `mosquitto`


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[LockedBroker]:
    """A Mosquitto running exactly contrib/mosquitto's settings and ACL, with test users."""
    etc = tmp_path / "etc"
    tls = make_tls_files(etc / "tls")
    etc.mkdir(exist_ok=True)
    for src, dst in (
        (tls.ca_cert, "ca.crt"),
        (tls.server_cert, "server.crt"),
        (tls.server_key, "server.key"),
    ):
        (etc / dst).write_bytes(src.read_bytes())
    (etc / "startgate.acl").write_text((CONTRIB / "startgate.acl").read_text())
    write_password_file(etc / "passwd", USERS)
    ports = (free_port(), free_port())
    conf = tmp_path / "mosquitto.conf"
    (tmp_path / "persist").mkdir()
    conf.write_text(localise((CONTRIB / "startgate.conf").read_text(), etc, tmp_path / "persist", ports))
    proc = subprocess.Popen(
        [find_binary(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        ok = all(wait_for_port("127.0.0.1", p, 10, alive=lambda: proc.poll() is None) for p in ports)
        assert ok, proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else "no listener"
        yield LockedBroker(f"mqtt://127.0.0.1:{ports[0]}", f"mqtts://127.0.0.1:{ports[1]}", etc / "ca.crt")
    finally:
        proc.terminate()
        proc.wait(10)


def publish(broker: str, user: str | None, topic: str, *, ca: Path | None = None) -> None:
    """Publish one message as `user` (None: anonymous); raise what the broker answered."""
    settings = ClientSettings(
        protocol="5",
        username=user,
        password=USERS.get(user or ""),
        tls_ca=ca,
        connect_timeout_s=3.0,
    )
    with Publisher([broker], settings) as pub:
        pub.publish(topic, b'{"v": 1}', timeout=3.0)


ALLOWED = [
    ("pve1", "startgate/c1/node/pve1/status"),
    ("pve1", "startgate/c1/node/pve1/event"),
    ("pve1", "startgate/c1/guest/101/event"),
    ("pve1", "startgate/c1/held/101"),
    ("pve2", "startgate/c1/held/101"),
    ("startgate-coordinator", "startgate/c1/gate/linstor/health"),
    ("startgate-coordinator", "startgate/c1/coordinator/status"),
    ("startgate-coordinator", "startgate/c1/coordinator/reply/abcdef12"),
    ("startgate-coordinator", "startgate/c1/held/101"),
    ("startgate-coordinator", "startgate/c1/ticket/101"),
    ("startgate-admin", "startgate/c1/cmd/release"),
    ("startgate-admin", "startgate/c1/cmd/drop"),
]
FORBIDDEN = [
    ("pve1", "startgate/c1/node/pve2/status"),  # another node's status
    ("pve1", "startgate/c1/node/pve2/event"),
    ("pve1", "startgate/c1/gate/linstor/health"),  # only the coordinator vouches for a gate
    ("pve1", "startgate/c1/coordinator/status"),
    ("pve1", "startgate/c1/ticket/101"),  # a node cannot release its own guests
    ("pve1", "startgate/c1/cmd/release"),
    ("startgate-coordinator", "startgate/c1/cmd/release"),  # nor can the coordinator command itself
    ("startgate-coordinator", "startgate/c1/node/pve1/status"),
    ("startgate-admin", "startgate/c1/held/101"),
    ("startgate-admin", "startgate/c1/gate/linstor/health"),
    ("startgate-admin", "startgate/c1/ticket/101"),
    ("pve1", "elsewhere/topic"),
]


@pytest.mark.parametrize(("user", "topic"), ALLOWED)
def test_each_role_may_publish_its_own_topics(locked: LockedBroker, user: str, topic: str) -> None:
    """Nodes, the coordinator and admins can each publish what their role needs."""
    publish(locked.plain, user, topic)


@pytest.mark.parametrize(("user", "topic"), FORBIDDEN)
def test_each_forbidden_publish_is_refused(locked: LockedBroker, user: str, topic: str) -> None:
    """Under MQTT v5 the broker answers a denied publish with "Not authorized"."""
    with pytest.raises(NotAuthorizedError):
        publish(locked.plain, user, topic)


def test_anonymous_and_wrong_passwords_are_refused(locked: LockedBroker) -> None:
    """No anonymous access; a wrong password is refused at connect."""
    with pytest.raises(NotAuthorizedError):
        publish(locked.plain, None, "startgate/c1/guest/101/event")
    settings = ClientSettings(protocol="5", username="pve1", password="wrong", connect_timeout_s=3.0)
    with pytest.raises(NotAuthorizedError), Publisher([locked.plain], settings) as pub:
        pub.publish("startgate/c1/guest/101/event", b"{}", timeout=3.0)


def test_the_cluster_listener_speaks_tls_only(locked: LockedBroker) -> None:
    """The non-loopback listener accepts TLS with the cluster CA, and refuses plain MQTT."""
    publish(locked.tls, "startgate-coordinator", "startgate/c1/gate/linstor/health", ca=locked.ca)
    plain_on_tls = locked.tls.replace("mqtts://", "mqtt://")
    with pytest.raises((BrokerUnavailableError, NotAuthorizedError)):
        publish(plain_on_tls, "startgate-coordinator", "startgate/c1/gate/linstor/health")


def test_the_shipped_files_are_used_verbatim_but_for_paths_and_ports(tmp_path: Path) -> None:
    """localise() changes nothing but file locations and listener ports (and adds `user root`)."""
    original = (CONTRIB / "startgate.conf").read_text().splitlines()
    moved = localise("\n".join(original) + "\n", tmp_path, tmp_path, (1, 2)).splitlines()
    changed = [(a, b) for a, b in zip(original, moved, strict=False) if a != b]
    assert all(
        a.startswith(
            (
                "#",
                "listener",
                "password_file",
                "acl_file",
                "persistence_location",
                "certfile",
                "keyfile",
                "cafile",
            )
        )
        for a, _ in changed
    )
    assert "allow_anonymous false" in moved


def _secret(path: Path, value: str) -> Path:
    path.write_text(value)
    path.chmod(0o600)
    return path


def test_cli_commands_log_in_as_the_admin_and_the_node_login_cannot_command(
    locked: LockedBroker, tmp_path: Path
) -> None:
    """`startgate release` publishes as bus.admin; with only the node's login the broker refuses it."""
    node_pw = _secret(tmp_path / "node-pw", USERS["pve1"])
    admin_pw = _secret(tmp_path / "admin-pw", USERS["startgate-admin"])
    (tmp_path / "pve" / "nodes" / "pve1" / "qemu-server").mkdir(parents=True)
    (tmp_path / "pve" / "nodes" / "pve1" / "qemu-server" / "101.conf").write_text(
        "scsi0: drbdstorage:vm-101-disk-0\n"
    )
    base = f"""
cluster = "c1"
node = "pve1"
[bus]
brokers = ["{locked.plain}"]
username = "pve1"
password_file = "{node_pw}"
[proxmox]
config_dir = "{tmp_path / "pve"}"
[[gates]]
name = "linstor"
check = {{ kind = "linstor", urls = ["http://127.0.0.1:9"] }}
storages = ["drbdstorage"]
"""
    with_admin = base.replace(
        f'password_file = "{node_pw}"\n',
        f'password_file = "{node_pw}"\n'
        f'admin = {{ username = "startgate-admin", password_file = "{admin_pw}" }}\n',
    )
    coord = ClientSettings(
        protocol="5", username="startgate-coordinator", password=USERS["startgate-coordinator"]
    )
    with FakeCoordinator(locked.plain, Topics("startgate", "c1"), coord) as fake:
        (tmp_path / "admin.toml").write_text(with_admin)
        ok = CliRunner().invoke(
            app, ["--config", str(tmp_path / "admin.toml"), "release", "101", "--timeout", "5"]
        )
        assert ok.exit_code == 0, ok.output
        assert [c.vmids for c in fake.commands] == [[101]]
        (tmp_path / "node.toml").write_text(base)
        refused = CliRunner().invoke(
            app, ["--config", str(tmp_path / "node.toml"), "release", "101", "--timeout", "5"]
        )
        assert refused.exit_code == 1
        assert "authori" in refused.output.lower()
        assert len(fake.commands) == 1
