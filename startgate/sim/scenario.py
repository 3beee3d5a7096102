"""Scenario files: a TOML description of a cluster, its guests and gates, and the faults to inject.

Validated with pydantic (unknown keys are errors); every problem names the file and the key path
(`guests[3].startup: ...`). `load(path)` reads one file, `parse(text, source)` validates text,
`dump(scenario)` writes one back as TOML (used to keep generated cases as fixtures).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from startgate.config import problems_of
from startgate.errors import ScenarioError
from startgate.names import check_name
from startgate.sim.model import Startup, parse_disk

Seconds = Annotated[float, Field(ge=0)]
VmId = Annotated[int, Field(ge=100, le=999_999_999)]


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeSpec(_M):
    """A node and how long it takes from power-on until pve-cluster runs."""

    name: str
    boot_s: Seconds = 60.0
    cpus: Annotated[int, Field(ge=1, le=1024)] = 8

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "node name")


class StorageSpec(_M):
    """A storage.cfg entry; `drbd` ones list the gates whose controllers the plugin asks."""

    id: str
    type: Literal["dir", "lvmthin", "lvm", "zfspool", "nfs", "drbd"]
    content: list[str] = []
    path: str | None = None
    shared: bool = False
    controller_gates: list[str] = []  # drbd: gates whose controller addresses go into `controller`
    resourcegroup: str = "drbdgrp"
    keep_res: list[str] = []  # drbd: resources drbd.service brings up at boot (kept .res files)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_.-]*[a-z0-9]|[a-z]", v, re.IGNORECASE):
            raise ValueError(f"{v!r} is not a Proxmox storage id")
        return v


class HASpec(_M):
    """HA resource options (pve-ha-manager src/PVE/HA/Resources.pm defaults)."""

    state: Literal["started", "stopped", "disabled", "ignored"] = "started"
    max_restart: Annotated[int, Field(ge=0, le=10)] = 1
    max_relocate: Annotated[int, Field(ge=0, le=10)] = 1


class GuestSpec(_M):
    """A VM (`qemu`) or container (`lxc`): where it lives, its disks, and how it starts."""

    vmid: VmId
    type: Literal["qemu", "lxc"] = "qemu"
    name: str | None = None
    node: str
    disks: Annotated[list[str], Field(min_length=1)]
    onboot: bool = False
    startup: str | None = None
    tags: list[str] = []
    ha: bool | HASpec = False
    lock: str | None = None

    @field_validator("startup")
    @classmethod
    def _startup(cls, v: str | None) -> str | None:
        if v is not None:
            Startup.parse(v)
        return v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        for t in v:
            if not re.fullmatch(r"[a-z0-9_][a-z0-9_+.-]*", t, re.IGNORECASE):
                raise ValueError(f"{t!r} is not a Proxmox tag")
        return v

    @model_validator(mode="after")
    def _disks(self) -> GuestSpec:
        for i, d in enumerate(self.disks):
            parse_disk(d, self.vmid, self.type, i)
        return self

    def ha_spec(self) -> HASpec | None:
        """The HA options, or None when the guest is not an HA resource."""
        if self.ha is True:
            return HASpec()
        return self.ha or None


class GateSpec(_M):
    """A gate's dependency as simulated: a LINSTOR controller running inside VM `vmid`."""

    name: str
    vmid: VmId
    kind: Literal["linstor"] = "linstor"
    storages: list[str] = []
    tags: list[str] = []
    vmids: list[VmId] = []
    boot_s: Seconds = 60.0  # VM running -> controller database loaded, /health 200
    satellite_s: Seconds = 20.0  # node up -> its satellite service runs
    connect_s: Seconds = 10.0  # controller healthy -> it reaches a running satellite (ReconnectorTask: 10 s)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "gate name")


class NodeNeverReturns(_M):
    """The node stays powered off."""

    kind: Literal["node_never_returns"]
    node: str


class ControllerNeverHealthy(_M):
    """The gate's controller VM runs but its /health stays 500."""

    kind: Literal["controller_never_healthy"]
    gate: str


class ControllerFlapping(_M):
    """The gate's /health alternates 500 and 200 every `period_s` within the window."""

    kind: Literal["controller_flapping"]
    gate: str
    from_s: Seconds = 0.0
    until_s: Seconds = 600.0
    period_s: Annotated[float, Field(gt=0)] = 20.0


class BrokerDown(_M):
    """The MQTT broker is stopped for the window (only meaningful when startgate runs)."""

    kind: Literal["broker_down"]
    from_s: Seconds = 0.0
    until_s: Seconds = 120.0


class ApiErrors(_M):
    """The Proxmox API answers `status` (or hangs `delay_s`) for matching paths within the window."""

    kind: Literal["api_errors"]
    from_s: Seconds = 0.0
    until_s: Seconds = 60.0
    status: Annotated[int, Field(ge=500, le=599)] = 500
    delay_s: Seconds = 0.0
    path: str = ""  # a regular expression on the path below /api2/json; empty: every path


Fault = Annotated[
    NodeNeverReturns | ControllerNeverHealthy | ControllerFlapping | BrokerDown | ApiErrors,
    Field(discriminator="kind"),
]


class Scenario(_M):
    """A whole scenario file."""

    name: str
    description: str = ""
    cluster: str = "pve1"
    pve_manager: str = "9.1.1"  # startall is serial up to 9.1.1, parallel per order level from 9.1.2
    max_workers: Annotated[int, Field(ge=1, le=64)] | None = None  # datacenter.cfg max_workers
    duration_s: Annotated[float, Field(gt=0)] = 1800.0  # give up after this much simulated time
    quiet_s: Annotated[float, Field(gt=0)] = 240.0  # stop once nothing happened for this long
    ha_loop_s: Annotated[float, Field(gt=0)] = 10.0
    fence_after_s: Seconds = 120.0
    nodes: Annotated[list[NodeSpec], Field(min_length=1, max_length=32)]
    storages: list[StorageSpec] = []
    guests: list[GuestSpec] = []
    gates: list[GateSpec] = []
    faults: list[Fault] = []

    @field_validator("pve_manager")
    @classmethod
    def _version(cls, v: str) -> str:
        if not re.fullmatch(r"\d+\.\d+\.\d+", v):
            raise ValueError(f"{v!r} is not a pve-manager version like 9.1.1")
        return v

    @property
    def parallel_startall(self) -> bool:
        """True from pve-manager 9.1.2 on (commit 301897cb: parallel within one order level)."""
        major, minor, patch = (int(x) for x in self.pve_manager.split("."))
        return (major, minor, patch) >= (9, 1, 2)

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        _unique([n.name for n in self.nodes], "nodes", "name")
        _unique([s.id for s in self.storages], "storages", "id")
        _unique([g.vmid for g in self.guests], "guests", "vmid")
        _unique([g.name for g in self.gates], "gates", "name")
        self._check_guests()
        self._check_gates()
        self._check_faults()
        return self

    def _check_guests(self) -> None:
        nodes = {n.name for n in self.nodes}
        storages = {s.id for s in self.storages} | {"local"}
        for i, g in enumerate(self.guests):
            if g.node not in nodes:
                raise ValueError(f"guests[{i}].node: no node {g.node!r}")
            for d in g.disks:
                sid = d.partition(",")[0].partition(":")[0]
                if sid not in storages:
                    raise ValueError(f"guests[{i}].disks: no storage {sid!r}")

    def _check_gates(self) -> None:
        vmids = {g.vmid for g in self.guests}
        storages = {s.id for s in self.storages}
        gates = {g.name for g in self.gates}
        for i, gate in enumerate(self.gates):
            if gate.vmid not in vmids:
                raise ValueError(f"gates[{i}].vmid: no guest {gate.vmid}")
            for s in gate.storages:
                if s not in storages:
                    raise ValueError(f"gates[{i}].storages: no storage {s!r}")
        for i, st in enumerate(self.storages):
            for gname in st.controller_gates:
                if gname not in gates:
                    raise ValueError(f"storages[{i}].controller_gates: no gate {gname!r}")

    def _check_faults(self) -> None:
        nodes = {n.name for n in self.nodes}
        gates = {g.name for g in self.gates}
        for i, f in enumerate(self.faults):
            ref_node = getattr(f, "node", None)
            ref_gate = getattr(f, "gate", None)
            if ref_node is not None and ref_node not in nodes:
                raise ValueError(f"faults[{i}].node: no node {ref_node!r}")
            if ref_gate is not None and ref_gate not in gates:
                raise ValueError(f"faults[{i}].gate: no gate {ref_gate!r}")

    def guest(self, vmid: int) -> GuestSpec:
        """The guest with this VMID (KeyError if none)."""
        for g in self.guests:
            if g.vmid == vmid:
                return g
        raise KeyError(vmid)


def _unique(values: list[Any], where: str, key: str) -> None:
    seen: set[Any] = set()
    for i, v in enumerate(values):
        if v in seen:
            raise ValueError(f"{where}[{i}].{key}: {v!r} is used twice")
        seen.add(v)


_UNION_TAGS = frozenset(
    {
        "node_never_returns",
        "controller_never_healthy",
        "controller_flapping",
        "broker_down",
        "api_errors",
        "bool",
        "HASpec",
    }
)


def parse(text: str, source: str = "<string>") -> Scenario:
    """Validate scenario TOML; ScenarioError names `source` and each wrong key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(source, [f"not valid TOML: {exc}"]) from None
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(source, problems_of(exc, _UNION_TAGS)) from None


def load(path: Path | str) -> Scenario:
    """Read and validate a scenario file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(str(p), ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(str(p), [f"cannot read: {exc}"]) from None
    return parse(text, str(p))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")


def dump_toml(data: dict[str, Any]) -> str:
    """TOML text for plain data: scalars and lists first, then tables and arrays of tables."""
    lines: list[str] = []
    _dump_table(data, "", lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _dump_table(data: dict[str, Any], prefix: str, lines: list[str]) -> None:
    def is_rows(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)

    for k, v in data.items():
        if not isinstance(v, dict) and not is_rows(v):
            lines.append(f"{k} = {_toml_value(v)}")
    for k, v in data.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and not any(isinstance(x, dict) or is_rows(x) for x in v.values()):
            lines += ["", f"[{name}]"]
            lines += [f"{sk} = {_toml_value(sv)}" for sk, sv in v.items()]
        elif isinstance(v, dict):
            lines += ["", f"[{name}]"]
            _dump_table(v, f"{name}.", lines)
        elif is_rows(v):
            for row in v:
                lines += ["", f"[[{name}]]"]
                lines += [f"{rk} = {_toml_value(rv)}" for rk, rv in row.items()]


def dump(scenario: Scenario) -> str:
    """The scenario as TOML text that `parse` reads back to an equal Scenario."""
    return dump_toml(scenario.model_dump(mode="json", exclude_defaults=True))
