"""A good startgate setup on fixture trees (an /etc/pve-like config_dir and a node root) for doctor."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tests.cli.conftest import write_config, write_tree

GOOD_GUESTS = {
    100: (
        "pve1",
        "qemu-server",
        "name: linstor-ctrl\nscsi0: drbdstorage:vm-100-disk-1,size=32G\nonboot: 1\n",
    ),
    101: (
        "pve1",
        "qemu-server",
        (
            "name: web1\nscsi0: drbdstorage:vm-101-disk-1,size=8G\nonboot: 1\nstartup: order=2\n"
            "hookscript: local:snippets/startgate-hook\n"
        ),
    ),
    102: (
        "pve2",
        "lxc",
        (
            "hostname: db\nrootfs: local-lvm:vm-102-disk-0,size=8G\ntags: db\n"
            "hookscript: local:snippets/startgate-hook\n"
        ),
    ),
    103: ("pve2", "qemu-server", "name: plain\nscsi0: local-lvm:vm-103-disk-0,size=8G\n"),
}

STORAGE_CFG = """dir: local
\tpath /var/lib/vz
\tcontent iso,vztmpl,backup,snippets

lvmthin: local-lvm
\tthinpool data
\tvgname pve
\tcontent rootdir,images

# LINSTOR, managed by the controller in VM 100
drbd: drbdstorage
\tcontent images,rootdir
\tcontroller 10.43.7.254
\tresourcegroup pve-rg
"""

HA_RESOURCES = "vm: 100\n\tstate started\n\nvm: 101\n\tstate started\n\tmax_restart 1\n"

SATELLITE_UNIT = """[Unit]
Description=LINSTOR Satellite Service
Wants=network-online.target
After=network-online.target
Before=pvedaemon.service

[Service]
Type=simple
ExecStart=/usr/share/linstor-server/bin/Satellite --logs=/var/log/linstor-satellite \\
    --config-directory=/etc/linstor
KillMode=mixed
User=root

[Install]
WantedBy=multi-user.target
"""

DPKG_STATUS = """Package: linstor-proxmox
Status: install ok installed
Version: 8.3.0-1
Description: LINSTOR Proxmox plugin
 with a continuation line

Package: linstor-satellite
Status: install ok installed
Version: 1.31.2-1

Package: drbd-utils
Status: deinstall ok config-files
Version: 9.20.0-1
"""


@dataclass
class Setup:
    """Where everything is, so a test can break one thing."""

    cfg: Path
    config_dir: Path
    root: Path
    token_file: Path

    def write(self, rel: str, text: str, *, under: Path | None = None) -> Path:
        """Write a file below the node root (or `under`)."""
        path = (under or self.root) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def guest(self, vmid: int, node: str, sub: str, text: str) -> None:
        """Replace or add one guest config."""
        self.write(f"nodes/{node}/{sub}/{vmid}.conf", text, under=self.config_dir)


def build(tmp: Path, brokers: list[str], prefix: str, api_url: str, secret: str) -> Setup:
    """The good setup: every doctor check passes."""
    config_dir = write_tree(tmp / "pve", GOOD_GUESTS)
    (config_dir / "storage.cfg").write_text(STORAGE_CFG)
    (config_dir / "ha").mkdir()
    (config_dir / "ha/resources.cfg").write_text(HA_RESOURCES)
    root = tmp / "root"
    s = Setup(tmp / "sg.toml", config_dir, root, tmp / "token")
    s.write("lib/systemd/system/linstor-satellite.service", SATELLITE_UNIT)
    s.write(
        "etc/systemd/system/linstor-satellite.service.d/keep-res.conf",
        "[Service]\nEnvironment=LS_KEEP_RES=vm-100-disk\n",
    )
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / "drbd.service").symlink_to("/lib/systemd/system/drbd.service")
    s.write("var/lib/dpkg/status", DPKG_STATUS)
    hook = s.write("var/lib/vz/snippets/startgate-hook", "#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    s.token_file.write_text(secret + "\n")
    s.token_file.chmod(0o600)
    write_config(
        s.cfg,
        brokers,
        prefix,
        config_dir,
        extra="",
        gate_extra="",
    )
    text = s.cfg.read_text().replace("[proxmox]\n", f'[proxmox]\nurl = "{api_url}"\ntimeout_s = 10.0\n')
    s.cfg.write_text(text)
    return s


def fake_systemctl(bin_dir: Path) -> Path:
    """A `systemctl` that prints $FAKE_UNIT_STATE (default active) for `is-active`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "systemctl"
    path.write_text('#!/bin/sh\necho "${FAKE_UNIT_STATE:-active}"\n')
    path.chmod(0o755)
    return path


def path_with(bin_dir: Path) -> str:
    """$PATH with `bin_dir` first."""
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
