"""The startgate configuration: one frozen pydantic model of the TOML file (see design.md).

The file is found at `--config`, else `$STARTGATE_CONFIG`, else /etc/startgate/startgate.toml.
Every problem is reported with the file and the key path (`gates[0].check.urls: ...`); secrets
live in their own files, which must not be readable by group or others.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from startgate.errors import ConfigError, SecretFileError
from startgate.names import VMID_MAX, VMID_MIN, check_name

DEFAULT_PATH = Path("/etc/startgate/startgate.toml")
ENV_VAR = "STARTGATE_CONFIG"

VmId = Annotated[int, Field(ge=VMID_MIN, le=VMID_MAX)]
PositiveSeconds = Annotated[float, Field(gt=0)]
# Proxmox storage ids: pve-storage's `pve-storage-id` format ([a-z][a-z0-9\-\_\.]*[a-z0-9]).
_STORAGE_ID = re.compile(r"^[a-z][a-z0-9_.-]*[a-z0-9]$|^[a-z]$", re.IGNORECASE)
# Proxmox tags: qemu-server/pve-guest-common tag regex `[a-z0-9_][a-z0-9_\-\+\.]*`.
_TAG = re.compile(r"^[a-z0-9_][a-z0-9_+.-]*$", re.IGNORECASE)
_BROKER_SCHEMES = {"mqtt": 1883, "mqtts": 8883, "unix": 0}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s)://host[:port] URL")
    return url.rstrip("/")


class LinstorCheck(_Model):
    """LINSTOR controller: `GET <url>/health` answers 200 on any of the urls, tried in order."""

    kind: Literal["linstor"]
    urls: Annotated[list[str], Field(min_length=1)]
    timeout_s: PositiveSeconds = 1.0
    node_ready: bool = True  # a guest's node is ready only when its satellite is ONLINE in /v1/nodes
    token_file: Path | None = None  # LINSTOR bearer token (auth.json-style deployments) for /v1/nodes
    verify_tls: bool = False  # LINSTOR uses self-signed certificates (linstor-proxmox does the same)

    @field_validator("urls")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        return [_http_url(u) for u in urls]


class HttpCheck(_Model):
    """Any HTTP service: a 2xx answer from `url` (or `expect_status`) is healthy."""

    kind: Literal["http"]
    url: str
    timeout_s: PositiveSeconds = 1.0
    expect_status: Annotated[int, Field(ge=100, le=599)] | None = None
    verify_tls: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return _http_url(url)


class TcpCheck(_Model):
    """Any TCP service: a completed connect to host:port is healthy."""

    kind: Literal["tcp"]
    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)]
    timeout_s: PositiveSeconds = 1.0


Check = Annotated[LinstorCheck | HttpCheck | TcpCheck, Field(discriminator="kind")]


class Gate(_Model):
    """A dependency with a health check, and the rule for which guests are its members."""

    name: str
    vmid: VmId | None = None
    check: Check
    storages: list[str] = []
    tags: list[str] = []
    vmids: list[VmId] = []
    interval_s: PositiveSeconds = 2.0
    healthy_after: Annotated[int, Field(ge=1, le=1000)] = 3
    timeout_s: Annotated[float, Field(ge=0)] = 0.0
    on_timeout: Literal["hold", "start"] = "hold"

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return check_name(name, "gate name")

    @field_validator("storages")
    @classmethod
    def _storages(cls, storages: list[str]) -> list[str]:
        for s in storages:
            if not _STORAGE_ID.match(s):
                raise ValueError(f"{s!r} is not a Proxmox storage id")
        return storages

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        for t in tags:
            if not _TAG.match(t):
                raise ValueError(f"{t!r} is not a Proxmox tag")
        return [t.lower() for t in tags]

    @model_validator(mode="after")
    def _members(self) -> Gate:
        if not (self.storages or self.tags or self.vmids):
            raise ValueError("a gate needs at least one of storages, tags or vmids (else it has no members)")
        if self.vmid is not None and self.vmid in self.vmids:
            raise ValueError(f"vmids: {self.vmid} is the gate's own VM, which is never a member")
        return self


class Identity(_Model):
    """A broker login for one role (see contrib/mosquitto: node, coordinator, admin users)."""

    username: Annotated[str, Field(min_length=1)]
    password_file: Path | None = None


class Bus(_Model):
    """The MQTT brokers and how to reach them.

    `username`/`password_file` are the node's own login (hookscript, agent, reading the CLI's
    state). The coordinator and the CLI's commands log in as `coordinator` / `admin` when those
    are set, because a locked-down broker lets only them write gate health or commands.
    """

    brokers: Annotated[list[str], Field(min_length=1)] = ["mqtt://127.0.0.1:1883"]
    topic_prefix: str = "startgate"
    username: str | None = None
    password_file: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    coordinator: Identity | None = None
    admin: Identity | None = None
    protocol: Literal["auto", "5", "3.1.1"] = "auto"  # auto: MQTT v5, falling back to 3.1.1
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    connect_timeout_s: PositiveSeconds = 2.0
    # A lost link is retried after reconnect_min_s, doubling up to reconnect_max_s.
    reconnect_min_s: PositiveSeconds = 1.0
    reconnect_max_s: PositiveSeconds = 30.0

    @field_validator("brokers")
    @classmethod
    def _brokers(cls, brokers: list[str]) -> list[str]:
        for b in brokers:
            parts = urlsplit(b)
            if parts.scheme not in _BROKER_SCHEMES:
                raise ValueError(f"{b!r}: use mqtt://host[:port], mqtts://host[:port] or unix:///path")
            if parts.scheme == "unix" and not parts.path:
                raise ValueError(f"{b!r}: a unix broker needs a socket path")
            if parts.scheme != "unix" and not parts.hostname:
                raise ValueError(f"{b!r}: no host")
            try:
                _ = parts.port
            except ValueError:
                raise ValueError(f"{b!r}: bad port") from None
        return brokers

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        for part in prefix.split("/"):
            check_name(part, "topic_prefix part")
        return prefix

    @model_validator(mode="after")
    def _tls_pair(self) -> Bus:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs a username")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s is smaller than reconnect_min_s")
        return self

    def as_role(self, role: Literal["node", "coordinator", "admin"]) -> Bus:
        """These settings with the login of `role` (the node's own when that role has none)."""
        ident = {"node": None, "coordinator": self.coordinator, "admin": self.admin}[role]
        if ident is None:
            return self
        return self.model_copy(update={"username": ident.username, "password_file": ident.password_file})


class Proxmox(_Model):
    """How the coordinator reaches the Proxmox API, and where guest configs live."""

    url: str = "https://127.0.0.1:8006"
    token_id: str = "startgate@pve!coordinator"  # noqa: S105 - an identity, not a secret
    token_secret_file: Path = Path("/etc/startgate/token")
    verify_tls: bool | Path = True  # True, False, or the path of a CA bundle (the cluster's pve-root-ca.pem)
    config_dir: Path = Path("/etc/pve")
    timeout_s: PositiveSeconds = 10.0

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return _http_url(url)

    @field_validator("token_id")
    @classmethod
    def _token_id(cls, token_id: str) -> str:
        if not re.fullmatch(r"[^\s@!=]+@[^\s@!=]+![A-Za-z][A-Za-z0-9._-]*", token_id):
            raise ValueError(f"{token_id!r} is not USER@REALM!TOKENID")
        return token_id


class Hook(_Model):
    """The hookscript's bounds and its durable spool."""

    max_seconds: Annotated[float, Field(gt=0, le=60)] = 3.0
    spool_dir: Path = Path("/var/spool/startgate")
    health_max_age_s: PositiveSeconds = 10.0
    snippet: Path = Path("/var/lib/vz/snippets/startgate-hook")
    volid: str = "local:snippets/startgate-hook"  # what `attach` writes into guest configs

    @field_validator("volid")
    @classmethod
    def _volid(cls, volid: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_.-]*:snippets/[^/\s]+", volid, re.IGNORECASE):
            raise ValueError(f"{volid!r} is not a snippets volume id (<storage>:snippets/<file>)")
        return volid


class Coordinator(_Model):
    """The coordinator service: state, leader lock, release pacing."""

    state_dir: Path = Path("/var/lib/startgate")
    lock_dir: Path = Path("/etc/pve/priv/lock/startgate")
    lock_timeout_s: PositiveSeconds = 120.0
    max_parallel_starts: Annotated[int, Field(ge=1, le=64)] = 4
    reconcile_interval_s: PositiveSeconds = 30.0
    start_retries: Annotated[int, Field(ge=0, le=100)] = 3
    retry_backoff_s: PositiveSeconds = 5.0
    ticket_ttl_s: PositiveSeconds = 60.0
    heartbeat_s: PositiveSeconds = 30.0
    metrics_listen: str | None = None  # e.g. "127.0.0.1:9771"; None: no metrics endpoint
    release_timeout_s: PositiveSeconds = 300.0  # a release still unconfirmed after this counts as failed
    observe_interval_s: PositiveSeconds = 2.0  # how often a guest whose outcome is awaited is looked at
    ha_stuck_s: PositiveSeconds = 120.0  # HA says started, the guest stays stopped this long: reset it
    api_workers: Annotated[int, Field(ge=1, le=64)] = 8  # Proxmox API calls in flight at once, at most
    # `startup: up=` delays are multiplied by this: 1 on a real cluster; the simulator, whose clock
    # runs faster than real time, sets its scale here so the delays mean what its guests meant.
    startup_up_scale: Annotated[float, Field(gt=0, le=1)] = 1.0


class Config(_Model):
    """The whole startgate.toml."""

    cluster: str
    node: str = ""
    bus: Bus = Bus()
    proxmox: Proxmox = Proxmox()
    gates: Annotated[list[Gate], Field(min_length=1)]
    hook: Hook = Hook()
    coordinator: Coordinator = Coordinator()

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, cluster: str) -> str:
        return check_name(cluster, "cluster name")

    @field_validator("node")
    @classmethod
    def _node(cls, node: str) -> str:
        return check_name(node, "node name") if node else node

    @field_validator("gates")
    @classmethod
    def _unique(cls, gates: list[Gate]) -> list[Gate]:
        seen: set[str] = set()
        for g in gates:
            if g.name in seen:
                raise ValueError(f"gate name {g.name!r} is used twice")
            seen.add(g.name)
        return gates

    @property
    def node_name(self) -> str:
        """This node's name: `node`, else this host's short name (as Proxmox names nodes)."""
        return self.node or socket.gethostname().split(".", 1)[0]

    def gate(self, name: str) -> Gate:
        """The gate called `name` (KeyError if none)."""
        for g in self.gates:
            if g.name == name:
                return g
        raise KeyError(name)


def resolve_path(path: Path | str | None = None) -> Path:
    """The config file to use: the argument, else $STARTGATE_CONFIG, else the default path."""
    if path:
        return Path(path)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT_PATH


def _loc(loc: tuple[int | str, ...], tags: frozenset[str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in tags:
            continue  # pydantic adds the union member's tag to the location; the key path has none
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def problems_of(exc: ValidationError, union_tags: frozenset[str] = frozenset()) -> list[str]:
    """One `key.path[0].key: message` line per pydantic error (for config and scenario files)."""
    lines = []
    for err in exc.errors(include_url=False):
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{_loc(err['loc'], union_tags)}: {msg}")
    return lines


_CHECK_TAGS = frozenset({"linstor", "http", "tcp"})


def parse(text: str, source: str = "<string>") -> Config:
    """Validate TOML text; ConfigError names `source` and each key path that is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from None
    return from_dict(data, source)


def from_dict(data: dict[str, Any], source: str = "<dict>") -> Config:
    """Validate an already-parsed mapping (as read from TOML)."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, problems_of(exc, _CHECK_TAGS)) from None


def load(path: Path | str | None = None) -> Config:
    """Find, read and validate the config file (see `resolve_path`)."""
    p = resolve_path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(p), ["file not found (set --config or $STARTGATE_CONFIG)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(p), [f"cannot read: {exc}"]) from None
    return parse(text, str(p))


def read_secret(path: Path, key: str) -> str:
    """Read a secret file named by config key `key`; refuse one readable by group or others."""
    try:
        st = path.stat()
    except OSError as exc:
        raise SecretFileError(str(path), [f"{key}: cannot read secret file: {exc.strerror}"]) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        mode = stat.filemode(st.st_mode)
        raise SecretFileError(
            str(path),
            [f"{key}: secret file is accessible by group or others ({mode}); run: chmod 600 {path}"],
        )
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretFileError(str(path), [f"{key}: cannot read secret file: {exc}"]) from None
    if not value:
        raise SecretFileError(str(path), [f"{key}: secret file is empty"])
    return value


def masked(config: Config) -> dict[str, Any]:
    """The effective config as a mapping, with every secret's file named but never its content."""
    data = config.model_dump(mode="json")
    data["node"] = config.node_name
    return data
