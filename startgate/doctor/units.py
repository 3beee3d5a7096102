"""systemd units as doctor needs them: a unit's effective [Service] settings, and enablement symlinks.

A unit is loaded from the first of /etc/systemd/system, /run/systemd/system, /lib/systemd/system,
/usr/lib/systemd/system that has it; drop-ins `<unit>.d/*.conf` from all of them apply in file
name order, a name in a higher directory hiding the same name below (systemd.unit(5)). An empty
assignment (`ExecStart=`) resets a list setting. `Environment=` takes space-separated, optionally
quoted assignments; `EnvironmentFile=` names files of `KEY=value` lines (`-` prefix: optional).

The LINSTOR satellite's keep-res regex comes from `--keep-res`/`-k` on its command line, else
from `LS_KEEP_RES` in its environment. The satellite keeps `/var/lib/linstor.d/*.res` files
whose *file name* the regex finds (LINBIT/linstor-server Satellite `deleteOldResFiles`:
`keepResPattern.matcher(path.getFileName().toString()).find()`), so `vm-100-disk-1` is tested as
`vm-100-disk-1.res` with a search, not a full match.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

UNIT_DIRS = ("etc/systemd/system", "run/systemd/system", "lib/systemd/system", "usr/lib/systemd/system")


@dataclass(frozen=True)
class ServiceSettings:
    """The [Service] settings doctor reads, after drop-ins; `files` lists what was read, in order."""

    exec_start: tuple[tuple[str, ...], ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    files: tuple[Path, ...] = ()

    def keep_res(self) -> tuple[str, str] | None:
        """The satellite's keep-res regex and where it was set, or None when it is not set."""
        for argv in self.exec_start:
            found = keep_res_arg(argv)
            if found is not None:
                return found, "ExecStart --keep-res"
        if "LS_KEEP_RES" in self.environment:
            return self.environment["LS_KEEP_RES"], "Environment LS_KEEP_RES"
        return None


def keep_res_arg(argv: tuple[str, ...]) -> str | None:
    """The value of `--keep-res`/`-k` in a command line (`--keep-res=X`, `--keep-res X`, `-k X`, `-kX`)."""
    for i, arg in enumerate(argv):
        for flag in ("--keep-res", "-k"):
            if arg == flag and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(flag + "="):
                return arg[len(flag) + 1 :]
        if arg.startswith("-k") and not arg.startswith("--") and len(arg) > 2:
            return arg[2:]
    return None


def _logical_lines(text: str) -> list[str]:
    out: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip()[:1] in {"#", ";"}):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        out.append(buf + line)
        buf = ""
    if buf:
        out.append(buf)
    return out


def _read_env_file(path: Path, env: dict[str, str]) -> None:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    for line in _logical_lines(text):
        key, eq, value = line.strip().partition("=")
        if eq and key.strip():
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            env[key.strip()] = value


def _apply(text: str, root: Path, exec_start: list[tuple[str, ...]], env: dict[str, str]) -> None:
    section = ""
    for line in _logical_lines(text):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1]
            continue
        if section != "Service" or "=" not in stripped:
            continue
        key, _, value = stripped.partition("=")
        key, value = key.strip(), value.strip()
        try:
            words = shlex.split(value)
        except ValueError:
            words = value.split()
        if key == "ExecStart":
            if not value:
                exec_start.clear()
            else:
                first = words[0].lstrip("-@:+!") if words else ""
                exec_start.append((first, *words[1:]))
        elif key == "Environment":
            if not value:
                env.clear()
            for word in words:
                k, eq, v = word.partition("=")
                if eq:
                    env[k] = v
        elif key == "EnvironmentFile" and value:
            path = value.removeprefix("-")
            _read_env_file(root / path.lstrip("/"), env)


def unit_files(root: Path, unit: str) -> list[Path]:
    """The unit file and its drop-ins, in the order systemd applies them (empty: no such unit)."""
    main = next((root / d / unit for d in UNIT_DIRS if (root / d / unit).is_file()), None)
    if main is None:
        return []
    dropins: dict[str, Path] = {}
    for d in reversed(UNIT_DIRS):  # lowest priority first, so higher directories overwrite
        folder = root / d / f"{unit}.d"
        if folder.is_dir():
            for conf in folder.glob("*.conf"):
                dropins[conf.name] = conf
    return [main, *(dropins[name] for name in sorted(dropins))]


def service_settings(root: Path, unit: str) -> ServiceSettings | None:
    """The unit's effective ExecStart and Environment, or None when the unit is not installed."""
    files = unit_files(root, unit)
    if not files:
        return None
    exec_start: list[tuple[str, ...]] = []
    env: dict[str, str] = {}
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        _apply(text, root, exec_start, env)
    return ServiceSettings(tuple(exec_start), env, tuple(files))


def systemd_escape(name: str) -> str:
    """`systemd-escape` for a unit instance name (enough for LINSTOR resource names)."""
    out = []
    for i, c in enumerate(name):
        if c.isascii() and (c.isalnum() or c in ":_" or (c == "." and i > 0)):
            out.append(c)
        elif c == "/":
            out.append("-")
        else:
            out.append(f"\\x{ord(c):02x}")
    return "".join(out)


def enabled(root: Path, unit: str) -> bool:
    """True when some target wants `unit` (a symlink in /etc/systemd/system/*.wants/ or *.requires/)."""
    base = root / "etc/systemd/system"
    try:
        folders = [p for p in base.iterdir() if p.is_dir() and p.name.endswith((".wants", ".requires"))]
    except OSError:
        return False
    return any((f / unit).is_symlink() or (f / unit).exists() for f in folders)


def keeps(regex: str, resource: str) -> bool:
    """True when the satellite's keep-res `regex` keeps `<resource>.res` (re.error when invalid)."""
    return re.search(regex, f"{resource}.res") is not None
