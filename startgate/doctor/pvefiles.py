"""Readers for the node files doctor checks: SectionConfig (storage.cfg, ha/resources.cfg) and dpkg's status.

SectionConfig follows proxmox/pve-common src/PVE/SectionConfig.pm `parse_config`: lines matching
`^\\s*#` are comments; a header is `^(\\S+):\\s*(\\S+)\\s*$` (type, id); the section's options are
the following lines matching `^\\s+(\\S+)(\\s+(.*\\S))?\\s*$` (a key, and a value unless it is a
flag like `disable`) up to the first empty line; a key given twice keeps its first value
("duplicate attribute"). Proxmox warns about and skips lines that match nothing; so do we.

dpkg's status file (/var/lib/dpkg/status) is RFC 822-style stanzas separated by blank lines.
Versions compare as dpkg does (`[epoch:]upstream[-revision]`, `~` sorts before anything).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_HEADER = re.compile(r"^(\S+):\s*(\S+)\s*$")
_OPTION = re.compile(r"^\s+(\S+)(\s+(.*\S))?\s*$")


@dataclass(frozen=True)
class Section:
    """One section: `<type>: <id>` and its options (None for a flag without a value)."""

    type: str
    id: str
    options: dict[str, str | None] = field(default_factory=dict)
    line: int = 0

    def get(self, key: str, default: str = "") -> str:
        """An option's value, `default` when absent (and "" for a bare flag)."""
        if key not in self.options:
            return default
        return self.options[key] or ""


@dataclass(frozen=True)
class SectionFile:
    """A parsed SectionConfig file: its sections in order, and the lines Proxmox would warn about."""

    sections: tuple[Section, ...]
    problems: tuple[str, ...] = ()

    def find(self, section_id: str) -> Section | None:
        """The section called `section_id`, if any."""
        for s in self.sections:
            if s.id == section_id:
                return s
        return None


def parse_sections(text: str, source: str = "") -> SectionFile:
    """Parse SectionConfig text as pve-common does (see the module docstring)."""
    lines = text.split("\n")
    sections: list[Section] = []
    problems: list[str] = []
    i = 0

    def next_line() -> tuple[int, str] | None:
        nonlocal i
        while i < len(lines):
            i += 1
            if not re.match(r"^\s*#", lines[i - 1]):
                return i, lines[i - 1]
        return None

    while (got := next_line()) is not None:
        lineno, line = got
        if not line:
            continue
        head = _HEADER.match(line)
        if head is None:
            problems.append(f"{source} line {lineno}: ignored: {line[:80]!r}")
            continue
        options: dict[str, str | None] = {}
        while (got := next_line()) is not None and got[1]:
            optno, opt = got
            kv = _OPTION.match(opt)
            if kv is None:
                problems.append(f"{source} line {optno}: ignored: {opt[:80]!r}")
            elif kv.group(1) in options:
                problems.append(f"{source} line {optno}: duplicate attribute {kv.group(1)!r}")
            else:
                options[kv.group(1)] = kv.group(3)
        sections.append(Section(head.group(1), head.group(2), options, lineno))
    return SectionFile(tuple(sections), tuple(problems))


@dataclass(frozen=True)
class Package:
    """An installed Debian package: its name and version."""

    name: str
    version: str


def installed_packages(status_text: str) -> dict[str, Package]:
    """The packages dpkg's status file lists as installed (`Status: ... installed`)."""
    out: dict[str, Package] = {}
    for stanza in re.split(r"\n\s*\n", status_text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1].isspace() or ":" not in line:
                continue  # a continuation line (descriptions) or garbage
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        name, version = fields.get("package"), fields.get("version")
        if name and version and fields.get("status", "").split()[-1:] == ["installed"]:
            out[name] = Package(name, version)
    return out


def _order(c: str) -> int:
    # dpkg's `order()`: ~ sorts first, then the end of a part, then letters, then everything else.
    if c == "~":
        return -1
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _verrevcmp(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            bc = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _split(version: str) -> tuple[int, str, str]:
    epoch, colon, rest = version.partition(":")
    if not colon:
        epoch, rest = "0", version
    upstream, dash, revision = rest.rpartition("-")
    if not dash:
        upstream, revision = rest, ""
    return (int(epoch) if epoch.isdigit() else 0), upstream, revision


def compare_versions(a: str, b: str) -> int:
    """Negative, zero or positive as Debian version `a` sorts before, equal to or after `b`."""
    ea, ua, ra = _split(a)
    eb, ub, rb = _split(b)
    if ea != eb:
        return ea - eb
    return _verrevcmp(ua, ub) or _verrevcmp(ra, rb)


def at_least(version: str, minimum: str) -> bool:
    """True when `version` is `minimum` or newer (Debian ordering)."""
    return compare_versions(version, minimum) >= 0
