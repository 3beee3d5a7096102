"""The snippet file Proxmox runs as the hookscript, and the checks that it can run at all.

The snippet is a few lines of Python whose shebang is the interpreter of startgate's own virtual
environment, started with `-I -S`: isolated (no PYTHON* variables, no user site, no script dir
on sys.path) and without the site module, which saves ~20 ms per start (site processes every
.pth file of the environment). The snippet puts the directory that holds the startgate package
on sys.path itself (and the environment's site-packages after the standard library, for the
slow path that validates a changed config with pydantic), so it works for a regular and for an
editable install alike, and imports only the hook entry. If even that import fails (a half-removed
environment), it allows the start and says so: a broken installation must not block every start
of every gated guest.

What it cannot catch: a missing interpreter. After a Proxmox VE 8 -> 9 upgrade (Debian 12 -> 13,
Python 3.11 -> 3.13) a virtual environment made with `python3 -m venv` follows /usr/bin/python3
to 3.13 and the hook keeps working (stdlib-only hot path, persistent config cache); one made with
`python3.11 -m venv` points to an interpreter that is gone, the kernel cannot run the snippet, and
Proxmox fails every start that has the hook attached. `venv_problems()` detects both (and
`startgate install` prints how to rebuild).
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import startgate

MARKER = "# startgate hookscript"


def package_parent() -> Path:
    """The directory that holds the `startgate` package (site-packages, or the source tree)."""
    return Path(startgate.__file__).resolve().parent.parent


def site_dirs() -> list[str]:
    """This environment's site-packages directories (the slow path's pydantic lives there)."""
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def snippet_text(
    python: str | None = None, parent: Path | None = None, sites: list[str] | None = None
) -> str:
    """The snippet's content for this interpreter and install location."""
    python = python or sys.executable
    parent = parent or package_parent()
    sites = site_dirs() if sites is None else sites
    return f"""#!{python} -IS
{MARKER}: written by `startgate install`; do not edit (run it again instead).
# Proxmox runs `<this file> <vmid> <phase>`; exit codes: startgate/hooks/entry.py.
import sys

sys.path.insert(0, {str(parent)!r})
sys.path += {sites!r}  # after the standard library; only the rare slow path imports from there
try:
    from startgate.hooks.entry import main
except BaseException as exc:  # a broken installation must not block every start
    if sys.argv[2:3] == ["pre-start"]:
        print(f"startgate: ERROR: allowing start unchecked: cannot load startgate: {{exc!r}}")
    sys.exit(0)
sys.exit(main(sys.argv[1:]))
"""


def shebang_interpreter(text: str) -> str | None:
    """The interpreter named by a script's `#!` line, or None."""
    first = text.split("\n", 1)[0]
    if not first.startswith("#!"):
        return None
    parts = first[2:].split()
    return parts[0] if parts else None


def venv_problems(python: str | None = None) -> list[str]:
    """What is wrong with the virtual environment of `python` (default: this one); [] when fine."""
    python = python or sys.executable
    problems: list[str] = []
    exe = Path(python)
    if not exe.exists():  # follows symlinks: a dangling link counts as missing
        if exe.is_symlink():
            problems.append(f"{python} points to {exe.readlink()}, which is gone")
        else:
            problems.append(f"{python} is missing")
    cfg = exe.parent.parent / "pyvenv.cfg"
    try:
        lines = cfg.read_text(encoding="utf-8").splitlines()
    except OSError:
        return problems  # not a venv (a system or distro install): nothing more to check
    values = {k.strip(): v.strip() for k, _, v in (ln.partition("=") for ln in lines) if k.strip()}
    home = values.get("home")
    if home and not (Path(home) / "python3").exists() and not Path(home).is_dir():
        problems.append(f"its base Python directory {home} is gone")
    version = values.get("version") or values.get("version_info")
    if version and python == sys.executable:
        made_for = ".".join(version.split(".")[:2])
        running = f"{sys.version_info[0]}.{sys.version_info[1]}"
        if made_for != running:
            problems.append(f"it was made for Python {made_for} but runs {running}")
    return problems


def rebuild_hint(venv: Path) -> str:
    """The commands that rebuild the environment in place."""
    return (
        f"rebuild it: python3 -m venv --clear {venv} && {venv}/bin/pip install startgate "
        f"&& {venv}/bin/startgate install"
    )
