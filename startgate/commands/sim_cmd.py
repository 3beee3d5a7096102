"""`startgate simulate SCENARIO.toml`, `demo` and `soak`: total outages on a simulated cluster.

Exit 0 only when the simulation's own invariant checker finds every guest that should run
running, none started before its gates were healthy and none started twice; 1 otherwise; 2 for a
bad scenario file or usage.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Annotated

import typer

from startgate.commands._common import EXIT_NOT_OK, EXIT_OK, config_path, guarded

ScaleOpt = Annotated[
    float | None,
    typer.Option(
        "--scale",
        min=0.0001,
        max=1.0,
        help=(
            "real seconds per simulated second (1.0: real time; default 0.03 with startgate, whose real"
            " processes need the time, 0.01 without)"
        ),
    ),
]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="write the whole result (events too) as JSON")]
WithoutOpt = Annotated[
    bool,
    typer.Option("--without-startgate", help="no hook, no coordinator: show the failure startgate prevents"),
]


def _broker_from_config(ctx: typer.Context) -> str | None:
    """The first configured broker, when a startgate config exists; else None (own mosquitto)."""
    from startgate.config import load, resolve_path  # noqa: PLC0415 - pydantic only when needed

    path = resolve_path(config_path(ctx))
    if not path.is_file():
        return None
    return load(path).bus.brokers[0]


def _run(
    ctx: typer.Context, scenario: Path, without: bool, json_file: Path | None, scale: float | None
) -> None:
    from startgate.sim import report  # noqa: PLC0415 - keep `startgate --help` light
    from startgate.sim import scenario as scn  # noqa: PLC0415
    from startgate.sim.play import SCALE_WITH_STARTGATE, SCALE_WITHOUT, play  # noqa: PLC0415

    scen = scn.load(scenario)
    broker = None if without else _broker_from_config(ctx)
    if scale is None:
        scale = SCALE_WITHOUT if without else SCALE_WITH_STARTGATE
    printer = report.ProgressPrinter()

    def say(msg: str) -> None:
        for line in textwrap.wrap(f"startgate: {msg}", width=report.WIDTH, subsequent_indent="  "):
            typer.echo(line, err=True)

    try:
        result = play(
            scen, with_startgate=not without, scale=scale, broker_url=broker, on_progress=printer, say=say
        )
    finally:
        printer.done()
    sections = (
        (f"Scenario {scen.name}: {scen.description}".rstrip(": "), report.header(result)),
        ("Timeline (simulated seconds since power-on):", report.timeline(result)),
        ("Guests at the end of the run:", report.summary(result)),
        ("Verdict:", report.verdict(result)),
    )
    for title, lines in sections:
        for line in [*textwrap.wrap(title, width=report.WIDTH), *lines, ""]:
            typer.echo(line)
    if json_file is not None:
        report.write_json(result, json_file)
        typer.echo(f"result written to {json_file}")
    raise typer.Exit(EXIT_OK if result.ok else EXIT_NOT_OK)


@guarded
def simulate(
    ctx: typer.Context,
    scenario: Annotated[Path, typer.Argument(help="scenario TOML (see contrib/scenarios/)")],
    without_startgate: WithoutOpt = False,
    json_file: JsonOpt = None,
    scale: ScaleOpt = None,
) -> None:
    """Play a scenario's total outage on a simulated cluster; print the timeline and the verdict."""
    _run(ctx, scenario, without_startgate, json_file, scale)


@guarded
def demo(
    ctx: typer.Context,
    without_startgate: WithoutOpt = False,
    json_file: JsonOpt = None,
    scale: ScaleOpt = None,
) -> None:
    """The seed outage: 4 nodes, the LINSTOR controller in HA VM 100, guests on DRBD."""
    from startgate.sim.play import seed_scenario  # noqa: PLC0415 - keep `startgate --help` light

    _run(ctx, seed_scenario(), without_startgate, json_file, scale)


@guarded
def soak(
    minutes: Annotated[
        float, typer.Option("--minutes", min=0.01, help="wall-clock minutes to keep starting rounds")
    ] = 5.0,
    rounds: Annotated[int | None, typer.Option("--rounds", min=1, help="stop after this many rounds")] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="fault draw seed (default: from the clock)")
    ] = None,
    keep: Annotated[
        Path | None,
        typer.Option("--keep", help="keep the files (logs, state) of rounds with a violation here"),
    ] = None,
) -> None:
    """Total outages one after another on a simulated cluster, with random faults; print the table."""
    import time  # noqa: PLC0415 - keep `startgate --help` light

    from startgate.sim import soak as soak_run  # noqa: PLC0415

    seed = seed if seed is not None else int(time.time()) % 100_000
    began = time.monotonic()
    report = soak_run.soak(
        minutes, seed, max_rounds=rounds, say=lambda line: typer.echo(line, err=True), keep=keep
    )
    for line in report.table((time.monotonic() - began) / 60.0):
        typer.echo(line)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_NOT_OK)


def register(app: typer.Typer) -> None:
    """Attach `simulate`, `demo` and `soak` to the root app."""
    app.command("simulate")(simulate)
    app.command("demo")(demo)
    app.command("soak")(soak)
