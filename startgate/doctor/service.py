"""Doctor's service checks: the API token's privileges, the brokers, the systemd units.

Privileges: the coordinator needs VM.Audit and VM.PowerMgmt on every guest (granted on `/` or
`/vms` with propagation), Sys.Audit on `/` (HA status, task lists), and Sys.Console on `/` to
take an HA guest out of `error` (proxmox/pve-ha-manager src/PVE/API2/HA/Resources.pm `update`).
Doctor suggests exactly those and reports any other privilege as more than needed.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from startgate.doctor.result import Finding, fail, ok, warn
from startgate.errors import BusError, ConfigError, ProxmoxError

if TYPE_CHECKING:
    from startgate.config import Config
    from startgate.doctor.pveapi import ApiAccess, Permissions

VM_PRIVS = ("VM.Audit", "VM.PowerMgmt")
SYS_PRIVS = ("Sys.Audit",)
HA_PRIV = "Sys.Console"
NEEDED = (*VM_PRIVS, *SYS_PRIVS, HA_PRIV)
UNITS = ("startgate-agent.service", "startgate-coordinator.service")

UnitState = Callable[[str], str]  # unit name -> `systemctl is-active` word (active, inactive, failed, ...)
FetchPermissions = Callable[["ApiAccess"], "Permissions"]


def role_fix(token_id: str) -> str:
    """The pveum commands that give the token exactly the privileges startgate needs."""
    user = token_id.split("!", 1)[0]
    return (
        f'pveum role add StartGate --privs "{",".join(NEEDED)}"; '
        f"pveum acl modify / --roles StartGate --users {user} --tokens '{token_id}'"
    )


def _granted(perms: Permissions, priv: str, paths: Sequence[str]) -> bool:
    """True when `priv` holds on the first of `paths` (exact), or propagates from `/`."""
    for path in paths:
        if priv in perms.get(path, {}):
            return True
    return bool(perms.get("/", {}).get(priv))


def token(cfg: Config, fetch: FetchPermissions, *, ha_guests: int) -> list[Finding]:
    """The token authenticates and has exactly the privileges needed (Sys.Console if HA is used)."""
    from startgate.config import read_secret  # noqa: PLC0415 - pydantic-free callers stay light
    from startgate.doctor.pveapi import ApiAccess  # noqa: PLC0415

    px = cfg.proxmox
    name = "api token"
    try:
        secret = read_secret(px.token_secret_file, "proxmox.token_secret_file")
    except ConfigError as exc:
        problem = exc.problems[0] if exc.problems else str(exc)
        return [fail(name, problem, f"put the secret of {px.token_id} in {px.token_secret_file}, mode 600")]
    access = ApiAccess(px.url, px.token_id, secret, px.verify_tls, px.timeout_s)
    try:
        perms = fetch(access)
    except ProxmoxError as exc:
        if exc.status == 401:
            return [
                fail(
                    name,
                    f"the API refused token {px.token_id}: {exc}",
                    f"pveum user token add {px.token_id.replace('!', ' ')} --privsep 1, "
                    f"and put its secret in {px.token_secret_file}",
                )
            ]
        if exc.status in {404, 501}:
            return [
                warn(
                    name,
                    f"{px.url} does not offer /access/permissions ({exc}): privileges unchecked",
                    "run doctor against a real Proxmox VE API (pveproxy on port 8006)",
                )
            ]
        return [fail(name, f"cannot reach the API: {exc}", "check proxmox.url and proxmox.verify_tls")]
    out = [ok(name, f"token {px.token_id} authenticates at {px.url}")]
    missing = [p for p in VM_PRIVS if not _granted(perms, p, ["/vms"])]
    missing += [p for p in SYS_PRIVS if not _granted(perms, p, ["/"])]
    if missing:
        out.append(
            fail(
                "privileges",
                f"token {px.token_id} lacks {', '.join(missing)} (needed on / or /vms, propagated)",
                role_fix(px.token_id),
            )
        )
    if not _granted(perms, HA_PRIV, ["/"]):
        msg = (
            f"token {px.token_id} lacks {HA_PRIV} on /: the coordinator cannot take HA guests out of `error`"
        )
        if ha_guests:
            out.append(
                warn(
                    "privileges", f"{msg} ({ha_guests} gated guest(s) are HA-managed)", role_fix(px.token_id)
                )
            )
        else:
            out.append(ok("privileges", f"{msg}; no gated guest is HA-managed, so that is fine"))
    extra = sorted({p for privs in perms.values() for p in privs} - set(NEEDED))
    if extra:
        out.append(
            warn(
                "privileges",
                f"token {px.token_id} has more than it needs: {', '.join(extra)}",
                f"give it a role with only {','.join(NEEDED)}: {role_fix(px.token_id)}",
            )
        )
    if not missing and not extra:
        out.append(
            ok(
                "privileges",
                f"token {px.token_id} has {', '.join(NEEDED[:3])} and nothing more it does not need",
            )
        )
    return out


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


Connect = Callable[[str], None]  # broker URL -> raise BusError when it does not answer


def brokers(cfg: Config, connect: Connect) -> list[Finding]:
    """Every broker answers, and traffic leaving the node is encrypted."""
    from startgate.bus.values import BrokerAddress  # noqa: PLC0415

    out: list[Finding] = []
    for url in cfg.bus.brokers:
        addr = BrokerAddress.parse(url)
        try:
            connect(url)
        except BusError as exc:
            out.append(
                fail(
                    f"broker {url}",
                    f"{url} does not answer: {exc}",
                    "systemctl status mosquitto on that node",
                )
            )
        else:
            out.append(ok(f"broker {url}", f"{url} answers"))
        if addr.transport == "tcp" and not addr.tls and not _loopback(addr.host):
            out.append(
                warn(
                    f"broker {url}",
                    f"{url} is neither loopback nor TLS: commands and passwords cross the network in clear",
                    f"use mqtts://{addr.host}:8883 with bus.tls_ca (see contrib/ for a TLS listener)",
                )
            )
    return out


def systemctl_is_active(unit: str) -> str:
    """`systemctl is-active <unit>`'s one word (run with an argv list, never a shell)."""
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv, the unit name is one of ours
            ["systemctl", "is-active", unit],  # noqa: S607 - systemctl is found on PATH like an admin would
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except FileNotFoundError:
        return "no systemctl"
    except subprocess.TimeoutExpired:
        return "no answer"
    return (done.stdout.strip().splitlines() or ["unknown"])[0]


def units(state: UnitState, names: Sequence[str] = UNITS) -> list[Finding]:
    """The agent and coordinator units are active on this node."""
    out: list[Finding] = []
    for unit in names:
        word = state(unit)
        if word == "active":
            out.append(ok(unit, f"{unit} is active"))
        else:
            out.append(
                fail(unit, f"{unit} is {word}", f"systemctl enable --now {unit}; journalctl -u {unit}")
            )
    return out
