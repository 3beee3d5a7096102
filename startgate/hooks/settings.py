"""The hookscript's view of the startgate config, loaded without pydantic from a validated cache.

Validating the TOML with the pydantic model costs 150-300 ms (the import alone ~110-150 ms), more
than the hook's whole budget. So whoever validates the config (`startgate install`, the node agent,
or the hook itself when the cache is stale) also writes `model_dump(mode="json")` into a cache,
keyed by the config file's path, device, inode, size and mtime_ns and startgate's version.
The hook reads the cache only when the key matches the file as it is now;
otherwise it validates the file with the model (slow, once) and rewrites the cache. It never
trusts TOML that the model has not validated.

The cache is marshal, not JSON: `marshal` is built into the interpreter, while `import json` (and
the `re` it pulls in) costs ~11 ms, a fifth of a non-member run's budget. marshal is not meant for
untrusted data, so the hook loads only a cache file owned by its own user and writable by no one
else, in a directory it created 0700 (the hook runs as root).

Cache location: `$STARTGATE_CACHE_DIR`, else /var/cache/startgate. Persistent on purpose: the
first hook runs after a reboot need no pydantic, and neither do they after a Proxmox VE 8 -> 9
upgrade has moved the environment's `python3` to 3.13 before anyone rebuilt it (pydantic's
compiled core no longer imports then, but the hot path is stdlib only and marshal reads the
older format; a cache that does not load is simply validated again).
This module is on the hot path: no typing, no pathlib, no json at run time.
"""

from __future__ import annotations

import marshal
import os

from startgate import __version__
from startgate.errors import ConfigError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: hot path (see startgate._lite)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, NamedTuple
else:
    from startgate._lite import NamedTuple

# The same resolution order as startgate.config.resolve_path, which imports pydantic
# (tests/hooks/test_settings.py checks both agree).
DEFAULT_CONFIG = "/etc/startgate/startgate.toml"
CONFIG_ENV = "STARTGATE_CONFIG"
CACHE_ENV = "STARTGATE_CACHE_DIR"
DEFAULT_CACHE_DIR = "/var/cache/startgate"


class CheckSpec(NamedTuple):
    """A gate's own health check, as the hook runs it when no fresh retained health exists."""

    kind: str  # "linstor", "http" or "tcp"
    urls: tuple[str, ...] = ()  # linstor: controller urls, tried in order; http: the one url
    timeout_s: float = 1.0
    verify_tls: bool = True
    expect_status: int | None = None  # http: this status instead of any 2xx
    host: str = ""  # tcp
    port: int = 0  # tcp
    node_ready: bool = False  # linstor: the guest's node must be in the retained `nodes_ready`


class GateSpec(NamedTuple):
    """One gate: its name, its own VM, its check and its membership rule (a core GateLike)."""

    name: str
    vmid: int | None
    check: CheckSpec
    storages: tuple[str, ...]
    tags: tuple[str, ...]
    vmids: tuple[int, ...]


class BusSpec(NamedTuple):
    """How to reach the brokers."""

    brokers: tuple[str, ...]
    topic_prefix: str
    username: str | None
    password_file: str | None
    tls_ca: str | None
    tls_cert: str | None
    tls_key: str | None
    protocol: str
    keepalive_s: int
    connect_timeout_s: float


class HookSettings(NamedTuple):
    """Everything the hookscript needs from the config."""

    source: str  # the config file it came from
    cluster: str
    node: str  # "" means this host's short name
    bus: BusSpec
    config_dir: str
    gates: tuple[GateSpec, ...]
    max_seconds: float
    spool_dir: str
    health_max_age_s: float
    snippet: str
    state_dir: str  # the node's state directory (coordinator.state_dir); the hook uses <state_dir>/hook

    @property
    def node_name(self) -> str:
        """This node's name: `node`, else this host's short name (as Proxmox names nodes)."""
        return self.node or os.uname().nodename.split(".", 1)[0]  # gethostname(), without socket


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _check(data: dict[str, Any]) -> CheckSpec:
    kind = data["kind"]
    if kind == "linstor":
        return CheckSpec(
            kind,
            urls=tuple(data["urls"]),
            timeout_s=float(data["timeout_s"]),
            verify_tls=bool(data["verify_tls"]),
            node_ready=bool(data["node_ready"]),
        )
    if kind == "http":
        return CheckSpec(
            kind,
            urls=(data["url"],),
            timeout_s=float(data["timeout_s"]),
            verify_tls=bool(data["verify_tls"]),
            expect_status=data.get("expect_status"),
        )
    return CheckSpec(kind, timeout_s=float(data["timeout_s"]), host=data["host"], port=int(data["port"]))


def from_dump(data: dict[str, Any], source: str) -> HookSettings:
    """Build the settings from a validated `Config.model_dump(mode="json")`."""
    bus = data["bus"]
    hook = data["hook"]
    return HookSettings(
        source=source,
        cluster=data["cluster"],
        node=data["node"],
        bus=BusSpec(
            brokers=tuple(bus["brokers"]),
            topic_prefix=bus["topic_prefix"],
            username=bus["username"],
            password_file=_opt(bus["password_file"]),
            tls_ca=_opt(bus["tls_ca"]),
            tls_cert=_opt(bus["tls_cert"]),
            tls_key=_opt(bus["tls_key"]),
            protocol=bus["protocol"],
            keepalive_s=int(bus["keepalive_s"]),
            connect_timeout_s=float(bus["connect_timeout_s"]),
        ),
        config_dir=str(data["proxmox"]["config_dir"]),
        gates=tuple(
            GateSpec(
                name=g["name"],
                vmid=g["vmid"],
                check=_check(g["check"]),
                storages=tuple(g["storages"]),
                tags=tuple(g["tags"]),
                vmids=tuple(g["vmids"]),
            )
            for g in data["gates"]
        ),
        max_seconds=float(hook["max_seconds"]),
        spool_dir=str(hook["spool_dir"]),
        health_max_age_s=float(hook["health_max_age_s"]),
        snippet=str(hook["snippet"]),
        state_dir=str(data["coordinator"]["state_dir"]),
    )


def resolve_path(env: Mapping[str, str], path: str | None = None) -> str:
    """The config file: `path`, else $STARTGATE_CONFIG, else /etc/startgate/startgate.toml."""
    return path or env.get(CONFIG_ENV) or DEFAULT_CONFIG


def cache_file(config_path: str, env: Mapping[str, str]) -> str:
    """Where the validated cache of `config_path` lives."""
    directory = env.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    name = os.path.abspath(config_path).strip("/").replace("/", "_")
    return os.path.join(directory, f"config-{name}.cache")


def _key(config_path: str) -> dict[str, Any]:
    try:
        st = os.stat(config_path)
    except FileNotFoundError:
        raise ConfigError(config_path, ["file not found (set --config or $STARTGATE_CONFIG)"]) from None
    except OSError as exc:
        raise ConfigError(config_path, [f"cannot read: {exc.strerror}"]) from None
    return {
        "path": os.path.abspath(config_path),
        "dev": st.st_dev,
        "ino": st.st_ino,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "version": __version__,
    }


def read_cached(config_path: str, env: Mapping[str, str]) -> HookSettings | None:
    """The settings from a cache that matches the config file as it is now, else None."""
    key = _key(config_path)
    try:
        with open(cache_file(config_path, env), "rb") as fh:
            st = os.fstat(fh.fileno())
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                return None  # not ours alone: do not load it
            data = marshal.loads(fh.read())  # noqa: S302 - our own file, checked above (module docstring)
        if not isinstance(data, dict) or data.get("key") != key:
            return None
        return from_dump(data["config"], config_path)
    except (OSError, ValueError, EOFError, KeyError, TypeError):
        return None  # missing, stale or damaged: validate again


def write_cache(config_path: str, dump: dict[str, Any], env: Mapping[str, str]) -> str | None:
    """Write the cache of a config validated from `config_path`; its path, or None if it cannot be written."""
    target = cache_file(config_path, env)
    try:
        key = _key(config_path)
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        tmp = f"{target}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(marshal.dumps({"key": key, "config": dump}))
        os.replace(tmp, target)
    except (OSError, ValueError, ConfigError):
        return None
    return target


def validate_and_cache(config_path: str, env: Mapping[str, str]) -> tuple[HookSettings, str | None]:
    """Validate the config with the pydantic model (slow), cache it, and return the settings."""
    key_before = _key(config_path)
    from startgate.config import load as load_config  # noqa: PLC0415 - pydantic: only when the cache is stale

    config = load_config(config_path)
    dump = config.model_dump(mode="json")
    written = write_cache(config_path, dump, env) if _key(config_path) == key_before else None
    return from_dump(dump, config_path), written


def load(env: Mapping[str, str], path: str | None = None) -> HookSettings:
    """The hook's settings: from the cache when it matches the file, else validated (and cached)."""
    config_path = resolve_path(env, path)
    cached = read_cached(config_path, env)
    if cached is not None:
        return cached
    return validate_and_cache(config_path, env)[0]
