"""`startgate events`: print this cluster's bus traffic, decoded, one line per message.

Retained state comes first (the broker sends it on subscribe), then live traffic with
`--follow`. Without `--follow` it prints what is retained or arrives within `--wait` seconds and
exits. It reads every broker in `bus.brokers` (copies of one message are shown once) with a
clean session, so it leaves nothing behind on the brokers. A payload that does not validate is
shown as INVALID with the reason; it never stops the command.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from startgate.commands._common import guarded, load_config

if TYPE_CHECKING:
    from startgate.bus.inbox import Invalid, Received
    from startgate.bus.topics import Topics

_HIDDEN = {"v", "event_id"}


def _when(epoch: float | None) -> str:
    ts = datetime.now(UTC) if epoch is None else datetime.fromtimestamp(epoch, tz=UTC)
    return ts.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _value(v: Any) -> str:
    if isinstance(v, list):
        return ",".join(_value(x) for x in v) or "[]"
    if isinstance(v, dict):
        return json.dumps(v, separators=(",", ":"))
    if isinstance(v, str):
        return v if v and " " not in v and '"' not in v else json.dumps(v)
    return json.dumps(v)


def render(item: Received | Invalid, topics: Topics, *, as_json: bool) -> str:
    """One output line for a received (or invalid) message."""
    from startgate.bus import messages  # noqa: PLC0415 - pydantic only when the command runs
    from startgate.bus.inbox import Invalid  # noqa: PLC0415

    rel = item.topic.removeprefix(topics.base + "/")
    flag = " retained" if item.retain else ""
    if isinstance(item, Invalid):
        if as_json:
            return json.dumps(
                {"topic": item.topic, "retained": item.retain, "broker": item.broker}
                | {"invalid": item.reason, "size": item.size}
            )
        return f"{_when(None)} {rel}{flag} INVALID ({item.size} bytes): {item.reason}"
    msg = item.message
    base = {"topic": item.topic, "retained": item.retain, "broker": item.broker}
    if isinstance(msg, messages.Cleared):
        if as_json:
            return json.dumps(base | {"kind": msg.ref.kind, "cleared": True})
        return f"{_when(None)} {rel}{flag} cleared"
    if as_json:
        return json.dumps(base | {"kind": msg.KIND, "message": msg.model_dump(mode="json")})
    fields = msg.model_dump(mode="json", exclude=_HIDDEN)
    epoch = fields.pop("time", None)
    when = _when(epoch if isinstance(epoch, (int, float)) else None)
    shown = " ".join(f"{k}={_value(v)}" for k, v in fields.items() if v not in (None, "", []))
    return f"{when} {rel}{flag} {type(msg).__name__} {shown}"


@guarded
def events(
    ctx: typer.Context,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing live traffic (Ctrl-C ends)")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
    wait: Annotated[
        float, typer.Option("--wait", min=0.0, help="without --follow: seconds to listen before exiting")
    ] = 1.0,
    count: Annotated[
        int, typer.Option("--count", "-n", min=0, help="exit after this many lines (0: no limit)")
    ] = 0,
) -> None:
    """Print the cluster's bus traffic, decoded, one line per message (retained state first)."""
    from startgate.bus.mqtt import LinkUp  # noqa: PLC0415 - keep `startgate --help` light
    from startgate.commands._bus import cluster_topics, reader  # noqa: PLC0415

    cfg = load_config(ctx)
    topics = cluster_topics(cfg)
    printed = 0
    with reader(cfg, [topics.everything], who="events", keep_invalid=True) as rd:
        try:
            rd.group.wait_ready(cfg.bus.connect_timeout_s + 1.0, every=False)
            deadline = None if follow else time.monotonic() + wait
            while count == 0 or printed < count:
                remaining = 0.5 if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    break
                item = rd.inbox.get(min(remaining, 0.5))
                if item is None or isinstance(item, LinkUp):
                    continue
                typer.echo(render(item, topics, as_json=as_json))
                printed += 1
        except KeyboardInterrupt:
            pass


def register(app: typer.Typer) -> None:
    """Attach `events` to the root app."""
    app.command("events")(events)
