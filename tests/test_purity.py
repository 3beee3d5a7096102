"""The core stays pure: importing it pulls in no I/O library and no adapter."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).parents[1] / "startgate" / "core"
BANNED_MODULES = (
    "paho",
    "proxmoxer",
    "requests",
    "sdnotify",
    "urllib3",
    "startgate.bus.mqtt",
    "startgate.coordinator",
)
BANNED_IMPORTS = (
    *BANNED_MODULES,
    "socket",
    "subprocess",
    "threading",
    "asyncio",
    "http",
    "urllib",
    "startgate.hooks",
    "startgate.sim",
    "startgate.probes",
    "startgate.systemd",
)
BANNED_CALLS = {("time", "sleep"), ("time", "time"), ("time", "monotonic"), ("datetime", "now")}


def core_modules() -> list[str]:
    """Every module under startgate/core, as a dotted name."""
    return sorted(
        "startgate.core" + ("." + p.stem if p.stem != "__init__" else "") for p in CORE.glob("*.py")
    )


def test_importing_the_core_loads_no_io_library_or_adapter() -> None:
    """A fresh interpreter that imports every core module has none of the banned modules loaded."""
    code = (
        "import sys, importlib\n"
        f"for m in {core_modules()!r}: importlib.import_module(m)\n"
        "print('\\n'.join(sys.modules))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    names = loaded.stdout.split()
    bad = sorted(n for n in names if n.startswith(BANNED_MODULES))
    assert bad == []


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_sources_import_nothing_banned_and_read_no_clock(path: Path) -> None:
    """The core's source names no banned module and calls no clock or sleep (a second line of defence)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            assert not name.startswith(BANNED_IMPORTS), f"{path.name}: imports {name}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            base = node.func.value
            if isinstance(base, ast.Name):
                assert (base.id, node.func.attr) not in BANNED_CALLS, (
                    f"{path.name}:{node.lineno} calls a clock"
                )


@pytest.mark.parametrize(
    "source",
    ["import paho.mqtt.client\n", "import requests\n", "from time import sleep\n", "import socket\n"],
)
def test_ruff_refuses_impure_code_in_the_core(source: str) -> None:
    """ruff's banned-api rule, as configured for startgate/core, flags each impure import."""
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run(
        [str(ruff), "check", "--select", "TID251", "--stdin-filename", str(CORE / "probe.py"), "-"],
        input=source,
        capture_output=True,
        text=True,
        check=False,
        cwd=CORE.parents[1],
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "TID251" in result.stdout
