"""Admin commands from the CLI (`cmd/release`, `cmd/drop`), each answered on `coordinator/reply/<id>`.

`release` re-examines held starts now (skipping their backoff, reviving failed ones) when their
gates allow it, and refuses otherwise; with `force` it issues a one-shot ticket the hook honours
and releases them regardless of their gates. `drop` forgets held starts. Unknown VMIDs and bad
requests get an error reply; nothing here can fail the coordinator.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from startgate.bus.messages import Command, Reply, ReplyItem
from startgate.core import lifecycle, release
from startgate.core.actions import Publish
from startgate.core.events import BadCommand
from startgate.core.model import HeldEntry, State
from startgate.core.out import Out

Outcome = Literal["released", "ticket", "dropped", "unknown", "not-held", "refused", "error"]
_BAD: frozenset[Outcome] = frozenset({"unknown", "refused", "error"})


def _reply(
    state: State, request_id: str, out: Out, *, ok: bool, message: str, items: list[ReplyItem]
) -> None:
    msg = Reply(
        event_id=out.event_id(),
        time=out.now,
        request_id=request_id,
        ok=ok,
        message=message[:2000],
        items=items,
        node=state.settings.node[:63],
    )
    out.add(Publish(msg))


def on_bad_command(state: State, ev: BadCommand, out: Out) -> State:
    """A command that did not validate: answer with an error (leader only, like every reply)."""
    if release.acting(state):
        _reply(state, ev.request_id, out, ok=False, message=f"bad request: {ev.error}", items=[])
    return state


def on_command(state: State, cmd: Command, out: Out) -> State:
    """Carry out a release/drop request and answer it."""
    if not release.acting(state):
        return state  # the leader answers; a follower only listens
    if cmd.all:
        vmids = sorted(state.held)
    elif cmd.vmids:
        vmids = sorted(set(cmd.vmids))
    else:
        _reply(
            state,
            cmd.event_id,
            out,
            ok=False,
            message="bad request: name the VMIDs, or ask for all",
            items=[],
        )
        return state
    items: list[ReplyItem] = []
    for vmid in vmids:
        if cmd.verb == "drop":
            state, outcome, detail = _drop(state, vmid, out)
        else:
            state, outcome, detail = _release(state, vmid, cmd, out)
        items.append(ReplyItem(vmid=vmid, outcome=outcome, detail=detail[:2000]))
    bad = [i for i in items if i.outcome in _BAD]
    who = f" for {cmd.requested_by}" if cmd.requested_by else ""
    out.log("info", f"command {cmd.verb}{who}: {len(items)} guest(s), {len(bad)} not done")
    message = (
        f"{cmd.verb}: {len(items) - len(bad)} of {len(items)} done" if items else f"{cmd.verb}: nothing held"
    )
    _reply(state, cmd.event_id, out, ok=not bad, message=message, items=items)
    return state


def _drop(state: State, vmid: int, out: Out) -> tuple[State, Outcome, str]:
    e = state.held.get(vmid)
    if e is not None:
        out.log("info", f"guest {vmid}: held start dropped by command")
        return lifecycle.clear(state, e, "dropped", out), "dropped", ""
    if vmid in state.guests:
        return state, "not-held", "no held start for this guest"
    return state, "unknown", "no such guest known to the coordinator"


def _release(state: State, vmid: int, cmd: Command, out: Out) -> tuple[State, Outcome, str]:
    by = cmd.requested_by or "command"
    e = state.held.get(vmid)
    if e is None:
        if vmid not in state.guests:
            return state, "unknown", "no such guest known to the coordinator"
        if not cmd.force:
            return state, "not-held", "no held start for this guest"
        state = release.ensure_ticket(state, vmid, by, out)
        return state, "ticket", "no held start; a ticket lets its next start through"
    if e.state == "releasing":
        return state, "released", "already being released"
    return _release_entry(state, e, cmd, by, out)


def _release_entry(state: State, e: HeldEntry, cmd: Command, by: str, out: Out) -> tuple[State, Outcome, str]:
    revive = {"tries": 0, "retry_at": 0.0} if e.state == "failed" else {"retry_at": 0.0}
    if cmd.force:
        state = release.ensure_ticket(state, e.vmid, by, out)
        state = lifecycle.move(state, e, "command", out, forced=True, **revive)
        out.touch(e.node)
        return state, "ticket", "released with a one-shot ticket, whatever its gates say"
    verdict = release.gate_verdict(state, dataclasses.replace(e, state="held"), out.now)
    if not verdict.ok:
        return state, "refused", f"{verdict.why}; use --force to release anyway"
    state = lifecycle.move(state, e, "command", out, **revive)
    out.touch(e.node)
    return state, "released", "queued for release now"
