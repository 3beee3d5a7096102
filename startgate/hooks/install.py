"""`startgate install`: put the hookscript, the systemd units and the directories in place on a node.

It writes the snippet Proxmox runs (default /var/lib/vz/snippets/startgate-hook, mode 0755, its
shebang this virtual environment's Python), renders the units from startgate/data/systemd/ into
/etc/systemd/system (ExecStart pointing at this environment's `startgate`), creates the spool and
state directories 0700, and writes the validated config cache the hook reads. It is idempotent
(a file whose content is already right is left alone), prints every step, and with `dry_run`
changes nothing. It never edits guest configs (attaching the hook is `startgate attach`).

It refuses to write a snippet for a broken virtual environment (see snippet.venv_problems) and
never overwrites a file in the snippets folder that it did not write itself.
"""

from __future__ import annotations

import os
import stat
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from startgate.hooks import settings as hook_settings
from startgate.hooks.snippet import MARKER, rebuild_hint, snippet_text, venv_problems

if TYPE_CHECKING:
    from collections.abc import Mapping

    from startgate.config import Config

UNITS = ("startgate-agent.service", "startgate-coordinator.service")
DEFAULT_UNITS_DIR = Path("/etc/systemd/system")


class Step(NamedTuple):
    """One thing install did (or, in a dry run, would do)."""

    action: str  # "wrote", "unchanged", "created", "fixed mode", "would write", "warning", "error"
    path: str
    note: str = ""

    def line(self) -> str:
        """The step as one printed line."""
        return f"{self.action:12s} {self.path}" + (f"  ({self.note})" if self.note else "")


class Plan(NamedTuple):
    """Where install puts things."""

    snippet: Path
    units_dir: Path
    dirs: tuple[tuple[Path, str], ...]  # (directory, what it is for)
    executable: Path  # the `startgate` console script of this environment
    config_path: Path


def render_unit(name: str, executable: Path, config_path: Path) -> str:
    """A unit file from its template in startgate/data/systemd/."""
    template = (
        resources.files("startgate").joinpath("data", "systemd", name + ".in").read_text(encoding="utf-8")
    )
    return template.replace("@STARTGATE@", str(executable)).replace("@CONFIG@", str(config_path))


def plan(
    config: Config, config_path: Path, snippets_dir: Path | None, units_dir: Path | None, cache_dir: Path
) -> Plan:
    """Where everything goes for this config and these options."""
    snippet = (snippets_dir / config.hook.snippet.name) if snippets_dir else config.hook.snippet
    state = config.coordinator.state_dir
    return Plan(
        snippet=snippet,
        units_dir=units_dir or DEFAULT_UNITS_DIR,
        dirs=(
            (config.hook.spool_dir, "hook spool"),
            (state, "state"),
            (state / "hook", "hook state"),
            (state / "agent", "agent state"),
            (cache_dir, "validated config cache"),
        ),
        executable=Path(sys.executable).parent / "startgate",
        config_path=config_path.absolute(),
    )


def _write(path: Path, text: str, mode: int, dry_run: bool) -> Step:
    try:
        current = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = None
    except (OSError, UnicodeDecodeError) as exc:
        return Step("error", str(path), f"cannot read: {exc}")
    if current == text:
        if stat.S_IMODE(path.stat().st_mode) != mode:
            if not dry_run:
                path.chmod(mode)
            return Step("would fix mode" if dry_run else "fixed mode", str(path), f"{mode:o}")
        return Step("unchanged", str(path))
    if dry_run:
        return Step("would write", str(path), "new" if current is None else "changed")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        tmp.chmod(mode)
        tmp.replace(path)
    except OSError as exc:
        return Step("error", str(path), f"cannot write: {exc.strerror}")
    return Step("wrote", str(path), "new" if current is None else "updated")


def _directory(path: Path, what: str, dry_run: bool) -> Step:
    if path.is_dir():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            if not dry_run:
                path.chmod(0o700)
            return Step("would fix mode" if dry_run else "fixed mode", str(path), f"{what}: {mode:o} -> 700")
        return Step("unchanged", str(path), what)
    if dry_run:
        return Step("would create", str(path), f"{what}, mode 700")
    try:
        path.mkdir(mode=0o700, parents=True)
        path.chmod(0o700)
    except OSError as exc:
        return Step("error", str(path), f"cannot create: {exc.strerror}")
    return Step("created", str(path), f"{what}, mode 700")


def storage_warnings(config: Config) -> list[Step]:
    """Warn when the snippet's storage (hook.volid) does not have `snippets` content enabled."""
    storage = config.hook.volid.split(":", 1)[0]
    cfg = config.proxmox.config_dir / "storage.cfg"
    try:
        text = cfg.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []  # not a Proxmox node (or pmxcfs not mounted): nothing to check
    section = None
    content: list[str] | None = None
    for line in text.splitlines():
        if line and not line[0].isspace() and ":" in line:
            section = line.split(":", 1)[1].strip()
        elif section == storage and line.strip().startswith("content "):
            content = [c.strip() for c in line.strip()[len("content ") :].split(",")]
    if section is None or content is None or "snippets" in content:
        return []
    wanted = ",".join([*content, "snippets"])
    return [
        Step(
            "warning",
            str(cfg),
            f"storage {storage!r} lacks snippets content: pvesm set {storage} --content {wanted}",
        )
    ]


def install(
    config: Config,
    config_path: Path,
    env: Mapping[str, str],
    *,
    snippets_dir: Path | None = None,
    units_dir: Path | None = None,
    dry_run: bool = False,
) -> list[Step]:
    """Do (or with `dry_run` plan) every install step; the steps, errors included."""
    cache_path = Path(hook_settings.cache_file(str(config_path), env))
    where = plan(config, config_path, snippets_dir, units_dir, cache_path.parent)
    venv = Path(sys.executable).parent.parent
    problems = venv_problems()
    if problems:
        return [
            Step(
                "error", str(venv), f"broken virtual environment: {'; '.join(problems)}; {rebuild_hint(venv)}"
            )
        ]
    steps: list[Step] = []
    try:
        existing = where.snippet.read_text(encoding="utf-8", errors="replace")
    except OSError:
        existing = None
    if existing is not None and MARKER not in existing:
        steps.append(
            Step("error", str(where.snippet), "exists and was not written by startgate: not touched")
        )
    else:
        steps.append(_write(where.snippet, snippet_text(), 0o755, dry_run))
    for unit in UNITS:
        text = render_unit(unit, where.executable, where.config_path)
        steps.append(_write(where.units_dir / unit, text, 0o644, dry_run))
    steps.extend(_directory(path, what, dry_run) for path, what in where.dirs)
    if hook_settings.read_cached(str(config_path), env) is not None:
        steps.append(Step("unchanged", str(cache_path), "validated config cache for the hook"))
    elif dry_run:
        steps.append(Step("would write", str(cache_path), "validated config cache for the hook"))
    else:
        cache = hook_settings.write_cache(str(config_path), config.model_dump(mode="json"), env)
        steps.append(
            Step("wrote", str(cache), "validated config cache for the hook")
            if cache
            else Step(
                "warning", str(hook_settings.cache_file(str(config_path), env)), "cannot write the cache"
            )
        )
    steps.extend(storage_warnings(config))
    return steps


def next_steps(config: Config) -> list[str]:
    """What the admin does after install (printed at the end)."""
    return [
        "systemctl daemon-reload",
        "systemctl enable --now startgate-agent.service startgate-coordinator.service",
        (
            f"attach the hook to each member guest: qm set <vmid> --hookscript {config.hook.volid}"
            " (pct set for containers), or `startgate attach`"
        ),
    ]
