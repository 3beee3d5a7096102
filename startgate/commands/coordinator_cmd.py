"""`startgate coordinator`: run the coordinator service (systemd startgate-coordinator.service)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated

import typer

from startgate.commands._common import EXIT_OK, guarded, load_config

log = logging.getLogger(__name__)


@guarded
def coordinator(
    ctx: typer.Context,
    node: Annotated[
        str | None,
        typer.Option("--node", help="this node's name (default: config `node`, else the hostname)"),
    ] = None,
) -> None:
    """Run the coordinator (gate health, held starts, re-issued starts) until SIGTERM/SIGINT."""
    from startgate.coordinator.service import Coordinator  # noqa: PLC0415 - heavy; only this command pays

    cfg = load_config(ctx)
    if not logging.getLogger().isEnabledFor(logging.INFO):
        logging.getLogger("startgate").setLevel(logging.INFO)  # a service logs what it does
    service = Coordinator(cfg, node=node)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    service.run(stop)
    raise typer.Exit(EXIT_OK)


def register(app: typer.Typer) -> None:
    """Attach `coordinator` to the root app."""
    app.command("coordinator")(coordinator)
