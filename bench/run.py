"""`make bench`: run every bench module (`python -m bench.<name> --json`) and print one table.

Each figure stands beside its target and its baseline.

With `--readme` the table also replaces the README's "Performance" section, stamped with the date
and the machine it was measured on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

from bench.report import Figure

HERE = Path(__file__).parent
README = HERE.parent / "README.md"
SKIP = {"run.py", "report.py", "__init__.py"}


def run_script(path: Path, quick: bool) -> list[Figure]:
    """Run one bench script with --json and return its figures (an error row if it fails)."""
    cmd = [sys.executable, "-m", f"bench.{path.stem}", "--json", *(["--quick"] if quick else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=HERE.parent)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return [Figure(f"{path.stem}: FAILED ({tail[0][:80]})", 0.0, "", ok=False)]
    return [Figure(**row) for row in json.loads(lines[-1])]


def machine() -> str:
    """A one-line description of this machine."""
    cpu = ""
    try:
        cpu = next(
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = platform.processor()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def table(rows: list[Figure]) -> str:
    """The figures as a Markdown table."""
    out = ["| figure | measured | target | baseline (same run) | |", "|---|---|---|---|---|"]
    for r in rows:
        verdict = {True: "ok", False: "missed", None: ""}[r.ok]
        out.append(f"| {r.name} | {r.value:.3f} {r.unit} | {r.target} | {r.baseline} | {verdict} |")
    return "\n".join(out)


def main() -> int:
    """Run the scripts, print the table, optionally write it into the README."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--readme", action="store_true", help="write the table into README.md")
    parser.add_argument("scripts", nargs="*", help="only these scripts (default: all in bench/)")
    args = parser.parse_args()
    scripts = [HERE / s for s in args.scripts] or sorted(p for p in HERE.glob("*.py") if p.name not in SKIP)
    rows: list[Figure] = []
    for path in scripts:
        print(f"bench: {path.name} ...", file=sys.stderr, flush=True)
        rows.extend(run_script(path, args.quick))
    stamp = f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d} on {machine()}."
    text = table(rows)
    print(text)
    print(stamp)
    if args.readme:
        section = f"## Performance\n\n{stamp} Run `make bench` to measure your own.\n\n{text}\n"
        readme = README.read_text()
        pattern = re.compile(r"## Performance\n.*?(?=\n## |\Z)", re.DOTALL)
        readme = (
            pattern.sub(section, readme) if pattern.search(readme) else readme.rstrip() + "\n\n" + section
        )
        README.write_text(readme)
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
