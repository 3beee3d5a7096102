"""Doctor's hook checks: member guests carry startgate's hookscript, and every node has the file.

Proxmox runs a guest's `hookscript:` on whichever node starts it, and a missing or non-executable
file fails every start there (proxmox/pve-guest-common GuestHelpers.pm `check_hookscript`), so
the file must be in place on every node: the node agents report it in their retained status.
A guest that carries another hookscript is reported, never overwritten (a guest has one).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from startgate.doctor.result import Finding, fail, ok, warn

if TYPE_CHECKING:
    from startgate.bus.messages import NodeStatus
    from startgate.config import Config
    from startgate.guests import Guest


def member_hookscripts(cfg: Config, guests: list[Guest]) -> list[Finding]:
    """Every member guest (templates aside) has `hook.volid` as its hookscript."""
    volid = cfg.hook.volid
    members = [g for g in guests if g.memberships and not g.config.template]
    out: list[Finding] = []
    good = 0
    for g in members:
        current = g.config.hookscript
        gates = ", ".join(g.gates)
        if current == volid:
            good += 1
        elif current is None:
            out.append(
                fail(
                    f"hookscript {g.vmid}",
                    f"{g.label} on {g.file.node} is a member of {gates} but has no hookscript: "
                    "its starts are not gated",
                    f"startgate attach {g.vmid}",
                )
            )
        else:
            out.append(
                warn(
                    f"hookscript {g.vmid}",
                    f"{g.label} on {g.file.node} (member of {gates}) carries another hookscript, {current}: "
                    "startgate's hook does not run for it (left as it is)",
                    f"call {cfg.hook.snippet} <vmid> <phase> from {current} and exit with its status, "
                    f"or: startgate attach --replace {g.vmid}",
                )
            )
    if not members:
        out.append(
            warn(
                "hookscript", "no guest is a member of any gate", "check the gates' storages, tags and vmids"
            )
        )
    elif good:
        out.append(ok("hookscript", f"{good} of {len(members)} member guest(s) carry {volid}"))
    return out


def local_file(cfg: Config, root: Path) -> Finding:
    """This node's copy of the hookscript exists and is executable."""
    path = root / str(cfg.hook.snippet).lstrip("/")
    shown = cfg.hook.snippet
    if not path.is_file():
        return fail("hook file", f"{shown} does not exist on this node", "startgate install")
    if not os.access(path, os.X_OK):
        return fail("hook file", f"{shown} is not executable", f"chmod 755 {shown}")
    return ok("hook file", f"{shown} is in place and executable")


def node_files(nodes: list[str], statuses: dict[str, NodeStatus] | None) -> list[Finding]:
    """Every node's agent reports the hook file in place (None: the bus could not be read)."""
    if statuses is None:
        return [
            warn(
                "node agents",
                "no broker answered, so other nodes' hook files (from their agents) are unchecked",
                "fix the brokers first (see the broker checks)",
            )
        ]
    out: list[Finding] = []
    for node in sorted(set(nodes) | set(statuses)):
        st = statuses.get(node)
        name = f"node {node}"
        if st is None:
            out.append(
                warn(
                    name,
                    f"no status from {node}'s agent: its hook file is unchecked",
                    f"on {node}: startgate install; systemctl enable --now startgate-agent",
                )
            )
        elif st.hook is None:
            out.append(
                warn(name, f"{node}'s agent does not report its hook file", f"upgrade startgate on {node}")
            )
        elif not st.hook.exists or not st.hook.executable:
            what = "missing" if not st.hook.exists else "not executable"
            fix = (
                f"on {node}: startgate install"
                if not st.hook.exists
                else f"on {node}: chmod 755 {st.hook.path}"
            )
            out.append(
                fail(
                    name,
                    f"{st.hook.path} is {what} on {node}: every start there of a guest that carries it fails",
                    fix,
                )
            )
        else:
            offline = " (agent offline now; last report)" if st.state == "offline" else ""
            out.append(ok(name, f"{st.hook.path} in place on {node}{offline}"))
    return out
