"""The config model: the example loads, and every kind of bad input names its culprit."""

import contextlib
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from startgate import config
from startgate.cli import app
from startgate.errors import ConfigError, SecretFileError

EXAMPLE = Path(__file__).parents[2] / "contrib" / "startgate.example.toml"
MINIMAL = """
cluster = "pve1"
[[gates]]
name = "linstor"
check = { kind = "linstor", urls = ["http://10.0.0.1:3370"] }
storages = ["drbdstorage"]
"""


def problems(text: str) -> list[str]:
    """The problem lines of the ConfigError that `text` raises."""
    with pytest.raises(ConfigError) as info:
        config.parse(text, "test.toml")
    assert info.value.path == "test.toml"
    return info.value.problems


def test_the_shipped_example_is_valid() -> None:
    """contrib/startgate.example.toml loads and has the documented defaults."""
    cfg = config.load(EXAMPLE)
    assert cfg.cluster == "pve1"
    assert cfg.gates[0].check.kind == "linstor"
    assert cfg.hook.max_seconds == 3.0
    assert cfg.coordinator.lock_timeout_s == 120


def test_a_minimal_config_gets_the_design_defaults() -> None:
    """Only cluster and one gate are required; the rest defaults as design.md says."""
    cfg = config.parse(MINIMAL)
    assert cfg.bus.brokers == ["mqtt://127.0.0.1:1883"]
    assert cfg.bus.topic_prefix == "startgate"
    assert cfg.proxmox.config_dir == Path("/etc/pve")
    assert cfg.hook.spool_dir == Path("/var/spool/startgate")
    assert cfg.coordinator.max_parallel_starts == 4
    gate = cfg.gates[0]
    assert (gate.interval_s, gate.healthy_after, gate.timeout_s, gate.on_timeout) == (2.0, 3, 0, "hold")
    assert cfg.node_name


def test_the_bus_reconnect_backoff_reaches_the_clients() -> None:
    """`bus.reconnect_min_s`/`reconnect_max_s` (default 1 s, 30 s) are what the MQTT clients back off with."""
    from startgate.bus.values import ClientSettings  # noqa: PLC0415 - only this test needs it

    assert (ClientSettings.from_config(config.parse(MINIMAL).bus).reconnect_max_s) == 30.0
    cfg = config.parse(MINIMAL + "[bus]\nreconnect_min_s = 0.5\nreconnect_max_s = 4\n")
    settings = ClientSettings.from_config(cfg.bus)
    assert (settings.reconnect_min_s, settings.reconnect_max_s) == (0.5, 4.0)


def test_the_model_is_frozen() -> None:
    """A loaded config cannot be changed by accident."""
    cfg = config.parse(MINIMAL)
    with pytest.raises(ValueError, match="frozen"):
        cfg.cluster = "x"  # type: ignore[misc]  # the point is that it fails


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + "bogus = 1\n", "bogus: unknown key"),
        (
            MINIMAL.replace('name = "linstor"', 'name = "linstor"\ncolour = "red"'),
            "gates[0].colour: unknown key",
        ),
        (MINIMAL.replace("urls = [", "url = [", 1), "gates[0].check.url: unknown key"),
        (MINIMAL.replace('"http://10.0.0.1:3370"', '"ftp://x"'), "gates[0].check.urls: 'ftp://x' is not"),
        (MINIMAL.replace("urls = [", "urls = 5, x=[", 1), "gates[0].check"),
        (MINIMAL + "[hook]\nmax_seconds = 'soon'\n", "hook.max_seconds"),
        (MINIMAL + "[hook]\nmax_seconds = -1\n", "hook.max_seconds"),
        (MINIMAL + "[coordinator]\nmax_parallel_starts = 0\n", "coordinator.max_parallel_starts"),
        ('cluster = "pve1"\ngates = []\n', "gates: "),
        ('cluster = "pve1"\n', "gates: "),
        (MINIMAL.replace('cluster = "pve1"', ""), "cluster: "),
        (MINIMAL.replace('cluster = "pve1"', 'cluster = "a/b"'), "cluster: "),
        (MINIMAL + MINIMAL.split("\n", 2)[2], "gate name 'linstor' is used twice"),
        (MINIMAL.replace('name = "linstor"', 'name = "linstor"\nvmid = 99'), "gates[0].vmid"),
        (MINIMAL.replace('name = "linstor"', 'name = "linstor"\nvmid = 1000000000'), "gates[0].vmid"),
        (MINIMAL.replace('storages = ["drbdstorage"]', "vmids = [42]"), "gates[0].vmids[0]"),
        (MINIMAL.replace('storages = ["drbdstorage"]', ""), "at least one of storages, tags or vmids"),
        (MINIMAL.replace('kind = "linstor"', 'kind = "ping"'), "gates[0].check"),
        (MINIMAL + '[bus]\nbrokers = ["http://x"]\n', "bus.brokers"),
        (MINIMAL + "[bus]\nbrokers = []\n", "bus.brokers"),
        (MINIMAL + '[bus]\ntopic_prefix = "a/#"\n', "bus.topic_prefix"),
        (MINIMAL + '[bus]\npassword_file = "/x"\n', "password_file needs a username"),
        (MINIMAL + "[bus]\nreconnect_min_s = 5\nreconnect_max_s = 2\n", "reconnect_max_s is smaller"),
        (MINIMAL + "[bus]\nreconnect_max_s = 0\n", "bus.reconnect_max_s"),
        (MINIMAL + '[proxmox]\ntoken_id = "root"\n', "proxmox.token_id"),
        ("cluster = 1\n" + MINIMAL, "not valid TOML"),
        ("cluster = [", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(text: str, expected: str) -> None:
    """Each bad value is reported with its key path."""
    found = problems(text)
    assert any(expected in p for p in found), found


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    """A missing config says which file it looked for."""
    with pytest.raises(ConfigError, match="file not found") as info:
        config.load(tmp_path / "nope.toml")
    assert info.value.path.endswith("nope.toml")


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    """A directory (or unreadable file) where the config should be is reported, not raised raw."""
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(tmp_path)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(binary)


def test_path_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--config wins over $STARTGATE_CONFIG, which wins over /etc/startgate/startgate.toml."""
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    assert config.resolve_path() == Path("/etc/startgate/startgate.toml")
    monkeypatch.setenv(config.ENV_VAR, str(tmp_path / "env.toml"))
    assert config.resolve_path() == tmp_path / "env.toml"
    assert config.resolve_path(tmp_path / "arg.toml") == tmp_path / "arg.toml"


def test_secret_files_must_be_private(tmp_path: Path) -> None:
    """A secret readable by group or others is refused with the chmod that fixes it."""
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    with pytest.raises(SecretFileError, match=r"chmod 600") as info:
        config.read_secret(secret, "proxmox.token_secret_file")
    assert "proxmox.token_secret_file" in str(info.value)
    secret.chmod(0o600)
    assert config.read_secret(secret, "proxmox.token_secret_file") == "s3cret"


def test_missing_or_empty_secrets_are_refused(tmp_path: Path) -> None:
    """A secret file that is missing or empty names the key."""
    with pytest.raises(SecretFileError, match=r"bus\.password_file"):
        config.read_secret(tmp_path / "none", "bus.password_file")
    empty = tmp_path / "empty"
    empty.write_text("")
    empty.chmod(0o600)
    with pytest.raises(SecretFileError, match="empty"):
        config.read_secret(empty, "bus.password_file")


TOML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)
KEYS = st.sampled_from(["cluster", "node", "gates", "bus", "hook", "coordinator", "proxmox", "x"])


@given(st.dictionaries(KEYS, TOML_VALUES, max_size=6))
def test_no_mapping_crashes_the_loader(data: dict[str, object]) -> None:
    """Any parsed-TOML-like mapping either validates or raises ConfigError."""
    with contextlib.suppress(ConfigError):
        config.from_dict(data)


@given(st.text(max_size=300))
def test_no_text_crashes_the_loader(text: str) -> None:
    """Any text either validates or raises ConfigError."""
    with contextlib.suppress(ConfigError):
        config.parse(text)


def test_config_check_command(tmp_path: Path) -> None:
    """`startgate config check` prints the effective config, masks secrets, exits 0 or 2."""
    secret = tmp_path / "token"
    secret.write_text("very-secret-value")
    secret.chmod(0o600)
    cfg = tmp_path / "startgate.toml"
    cfg.write_text(MINIMAL + f'[proxmox]\ntoken_secret_file = "{secret}"\n')
    ok = CliRunner().invoke(app, ["--config", str(cfg), "config", "check"])
    assert ok.exit_code == 0, ok.output
    assert '"cluster": "pve1"' in ok.output
    assert "very-secret-value" not in ok.output
    assert "content masked" in ok.output
    secret.chmod(0o640)
    loose = CliRunner().invoke(app, ["--config", str(cfg), "config", "check"])
    assert loose.exit_code == 2
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL + "bogus = 1\n")
    res = CliRunner().invoke(app, ["--config", str(bad), "config", "check"])
    assert res.exit_code == 2
    assert "bogus: unknown key" in res.output
    os.environ.pop("STARTGATE_CONFIG", None)


def test_roles_log_in_with_their_own_identity() -> None:
    """bus.as_role swaps in the coordinator's or admin's login; without one, the node's stays."""
    cfg = config.parse(
        MINIMAL
        + '[bus]\nusername = "pve1"\n'
        + 'coordinator = { username = "startgate-coordinator", password_file = "/c" }\n'
    )
    assert cfg.bus.as_role("node").username == "pve1"
    coordinator = cfg.bus.as_role("coordinator")
    assert (coordinator.username, coordinator.password_file) == ("startgate-coordinator", Path("/c"))
    assert cfg.bus.as_role("admin") is cfg.bus
    assert any(
        "bus.admin.username" in p for p in problems(MINIMAL + "[bus]\nadmin = { password_file = '/a' }\n")
    )
