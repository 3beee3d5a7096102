"""Argument checks shared by the guest commands: VMIDs that are numbers in range and known guests.

Bad input is a usage error (exit 2) that names the culprit, raised before anything is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import typer

from startgate.commands._common import EXIT_USAGE
from startgate.names import check_vmid

if TYPE_CHECKING:
    from pathlib import Path


def usage_error(message: str) -> typer.Exit:
    """Print `message` to stderr and return the exit (code 2) for the caller to raise."""
    typer.echo(f"startgate: {message}", err=True)
    return typer.Exit(EXIT_USAGE)


def vmids(values: Sequence[str]) -> list[int]:
    """The VMIDs given on the command line, in order, without repeats; exit 2 on a bad one."""
    out: list[int] = []
    for value in values:
        try:
            vmid = check_vmid(value.strip())
        except ValueError as exc:
            raise usage_error(str(exc)) from None
        if vmid not in out:
            out.append(vmid)
    return out


def unknown(wanted: Iterable[int], config_dir: Path) -> list[int]:
    """The VMIDs in `wanted` that no node has a config for.

    When `<config_dir>/nodes` cannot be read (not on a Proxmox node), nothing can be said here:
    the result is empty and the check is left to the coordinator.
    """
    from startgate import inventory  # noqa: PLC0415 - only guest commands need it

    if not inventory.readable(config_dir):
        return []
    present = {g.vmid for g in inventory.scan(config_dir)}
    return [v for v in wanted if v not in present]


def unknown_error(vmids: Sequence[int], config_dir: Path) -> typer.Exit:
    """The usage error for VMIDs that are neither configured nor held."""
    names = ", ".join(str(v) for v in vmids)
    return usage_error(
        f"unknown VMID {names}: no guest config under {config_dir}/nodes/*/{{qemu-server,lxc}}/ "
        "and no held start"
    )
