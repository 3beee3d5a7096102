"""The hook entry's own pieces: VMID parsing (as startgate.names does it) and the light import path."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from startgate.hooks.entry import parse_vmid
from startgate.hooks.snippet import package_parent
from startgate.names import check_vmid


@given(st.one_of(st.text(max_size=12), st.integers(min_value=-10, max_value=10**10).map(str)))
def test_parse_vmid_agrees_with_names(text: str) -> None:
    """The entry accepts exactly the VMIDs startgate.names accepts, with the same value."""
    try:
        expected: int | None = check_vmid(text)
    except ValueError:
        expected = None
    try:
        got: int | None = parse_vmid(text)
    except ValueError:
        got = None
    assert got == expected


@pytest.mark.parametrize("module", ["startgate.hooks.entry", "startgate.hooks.run"])
def test_the_light_path_imports_no_typing_json_or_sockets(module: str) -> None:
    """Importing the entry (what every run pays) loads neither typing, json, re, pathlib nor socket."""
    path = str(package_parent())
    code = f"import sys; sys.path.insert(0, {path!r}); import {module}; print(' '.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True, cwd="/"
    )
    loaded = set(out.stdout.split())
    assert (
        loaded & {"typing", "json", "re", "pathlib", "socket", "pydantic", "paho", "startgate.hooks.member"}
        == set()
    )
