"""Doctor's parsers and small checks, without a broker: SectionConfig, dpkg, units, brokers."""

from __future__ import annotations

from pathlib import Path

import pytest

from startgate.config import Config, parse
from startgate.doctor import service, units
from startgate.doctor.pvefiles import compare_versions, installed_packages, parse_sections
from startgate.errors import BrokerUnavailableError


def test_section_config_parses_like_pve_common() -> None:
    """Headers, tab options, flags, comments, a blank line ending a section, duplicates keep the first."""
    text = (
        "# comment\n"
        "dir: local\n\tpath /var/lib/vz\n\tcontent iso,snippets\n\tdisable\n\n"
        "drbd: drbdstorage\n\tcontroller 10.0.0.1, 10.0.0.2 \n\t# inline comment line\n"
        "\tcontroller 10.9.9.9\n\tresourcegroup rg\n"
        "garbage line\n"
    )
    cfg = parse_sections(text, "storage.cfg")
    local = cfg.find("local")
    assert local is not None
    assert local.type == "dir"
    assert local.options == {"path": "/var/lib/vz", "content": "iso,snippets", "disable": None}
    drbd = cfg.find("drbdstorage")
    assert drbd is not None
    assert drbd.get("controller") == "10.0.0.1, 10.0.0.2"
    assert drbd.get("resourcegroup") == "rg"
    assert any("duplicate attribute 'controller'" in p for p in cfg.problems)
    assert any("garbage line" in p for p in cfg.problems)


@pytest.mark.parametrize(
    ("a", "b", "sign"),
    [
        ("8.3.0-1", "8.3.0", 1),
        ("8.2.10-1", "8.3.0", -1),
        ("6.0.0~rc1-1", "6.0.0", -1),
        ("1:1.0", "9.9", 1),
        ("1.33.0-1", "1.33.0-1", 0),
        ("1.33.0a", "1.33.0", 1),
        ("10.0", "9.99", 1),
    ],
)
def test_debian_version_ordering(a: str, b: str, sign: int) -> None:
    """Versions compare as dpkg does (epoch, ~, letters before other characters)."""
    got = compare_versions(a, b)
    assert (got > 0) - (got < 0) == sign


def test_dpkg_status_lists_installed_packages_only() -> None:
    """Only `Status: ... installed` stanzas count; continuation lines are skipped."""
    text = (
        "Package: a\nStatus: install ok installed\nVersion: 1.0\nDescription: x\n y\n\n"
        "Package: b\nStatus: deinstall ok config-files\nVersion: 2.0\n"
    )
    assert set(installed_packages(text)) == {"a"}


@pytest.mark.parametrize(
    ("argv", "value"),
    [
        (("sat", "--keep-res=a.*"), "a.*"),
        (("sat", "--keep-res", "b"), "b"),
        (("sat", "-k", "c"), "c"),
        (("sat", "-kd"), "d"),
        (("sat", "--logs=/x"), None),
    ],
)
def test_keep_res_argument_forms(argv: tuple[str, ...], value: str | None) -> None:
    """Every way picocli accepts --keep-res/-k."""
    assert units.keep_res_arg(argv) == value


def test_systemd_escape_of_resource_names() -> None:
    """Dashes become \\x2d, as `systemd-escape` prints them."""
    assert units.systemd_escape("vm-100-disk-1") == "vm\\x2d100\\x2ddisk\\x2d1"
    assert units.systemd_escape("linstor_db") == "linstor_db"


def test_dropin_in_etc_hides_the_same_name_in_lib(tmp_path: Path) -> None:
    """A drop-in in /etc with the name of one in /lib replaces it; others apply in name order."""
    lib = tmp_path / "lib/systemd/system"
    (lib / "x.service.d").mkdir(parents=True)
    (lib / "x.service").write_text("[Service]\nExecStart=/bin/x\n")
    (lib / "x.service.d/10-a.conf").write_text("[Service]\nEnvironment=LS_KEEP_RES=lib\n")
    etc = tmp_path / "etc/systemd/system/x.service.d"
    etc.mkdir(parents=True)
    (etc / "10-a.conf").write_text("[Service]\nEnvironment=LS_KEEP_RES=etc\n")
    (etc / "20-b.conf").write_text("[Service]\nEnvironment=OTHER=1\n")
    settings = units.service_settings(tmp_path, "x.service")
    assert settings is not None
    assert settings.environment == {"LS_KEEP_RES": "etc", "OTHER": "1"}
    assert settings.keep_res() == ("etc", "Environment LS_KEEP_RES")
    assert units.service_settings(tmp_path, "missing.service") is None


def _cfg(brokers: str) -> Config:
    return parse(
        f"""
cluster = "c"
[bus]
brokers = {brokers}
[[gates]]
name = "g"
check = {{ kind = "tcp", host = "127.0.0.1", port = 1 }}
vmids = [101]
"""
    )


def test_brokers_off_loopback_without_tls_warn() -> None:
    """mqtt:// to another host: warn; loopback, mqtts:// and unix sockets: fine; no answer: fail."""
    cfg = _cfg('["mqtt://127.0.0.1:1883", "mqtt://10.0.0.2:1883", "mqtts://10.0.0.3", "unix:///run/m.sock"]')

    def connect(url: str) -> None:
        if "10.0.0.3" in url:
            raise BrokerUnavailableError("refused")

    findings = service.brokers(cfg, connect)
    bad = {(f.check, f.status) for f in findings if f.status != "ok"}
    assert bad == {("broker mqtt://10.0.0.2:1883", "warn"), ("broker mqtts://10.0.0.3", "fail")}


def test_units_report_each_state() -> None:
    """`systemctl is-active` words other than active fail with the enable fix."""
    states = {"a.service": "active", "b.service": "activating"}
    findings = service.units(states.__getitem__, ["a.service", "b.service"])
    assert [(f.check, f.status) for f in findings] == [("a.service", "ok"), ("b.service", "fail")]
