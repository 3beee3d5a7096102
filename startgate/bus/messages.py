"""Versioned message models: one pydantic model per row of design.md's topic table.

Every payload is a JSON object with `v` (schema version) and `event_id` (QoS 1 is at-least-once,
so receivers drop duplicates by it). Times are Unix epoch seconds (UTC). An empty retained
payload clears a retained topic; `decode` returns `Cleared` for it.

The wire format is pinned by golden fixtures in tests/bus/golden/. The hookscript writes its
payloads without importing pydantic (startgate.hooks), and its output is validated against these
models in the tests.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from startgate.bus import topics as t
from startgate.errors import MessageError, TopicError
from startgate.names import VMID_MAX, VMID_MIN, check_name

SCHEMA_VERSION = 1
MAX_PAYLOAD = 64 * 1024  # our largest message is a few KiB; anything bigger is garbage

VmId = Annotated[int, Field(ge=VMID_MIN, le=VMID_MAX)]
Epoch = Annotated[float, Field(ge=0)]
GuestType = Literal["qemu", "lxc"]
Phase = Literal["pre-start", "post-start", "pre-stop", "post-stop"]
Text = Annotated[str, Field(max_length=2000)]
NodeName = Annotated[str, AfterValidator(lambda v: check_name(v, "node name"))]
GateName = Annotated[str, AfterValidator(lambda v: check_name(v, "gate name"))]


def new_event_id() -> str:
    """A fresh event id (random, 32 hex digits)."""
    return uuid.uuid4().hex


class Message(BaseModel):
    """Fields every payload carries."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    KIND: ClassVar[str]

    v: Literal[1] = 1
    event_id: Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] = Field(
        default_factory=new_event_id
    )

    def to_json(self) -> bytes:
        """The wire form: compact JSON, UTF-8."""
        return self.model_dump_json().encode()


class GuestEvent(Message):
    """`guest/<vmid>/event`: one lifecycle phase of one guest, and the hook's decision."""

    KIND = t.GUEST_EVENT
    time: Epoch
    vmid: VmId
    node: NodeName
    type: GuestType
    phase: Phase
    decision: Literal["allow", "hold"] | None = None  # pre-start only
    reason: Text = ""
    gates: list[GateName] = []
    ha: bool | None = None
    error: Text | None = None  # an internal error that made the hook allow the start anyway
    ticket: Annotated[str, Field(max_length=64)] | None = None  # the release ticket this allow used


class HeldStart(Message):
    """`held/<vmid>` (retained): a start that was refused and will be re-issued."""

    KIND = t.HELD
    vmid: VmId
    node: NodeName
    type: GuestType
    gates: Annotated[list[GateName], Field(min_length=1)]
    first_held: Epoch
    last_held: Epoch
    attempts: Annotated[int, Field(ge=1)] = 1
    ha: bool = False
    state: Literal["held", "releasing", "failed"] = "held"
    reason: Text = ""
    source: Literal["hook", "reconcile", "coordinator"] = "hook"
    name: Annotated[str, Field(max_length=128)] | None = None
    startup_order: Annotated[int, Field(ge=0)] | None = None


class GateHealth(Message):
    """`gate/<name>/health` (retained): a gate's health as the leader coordinator sees it."""

    KIND = t.GATE_HEALTH
    gate: GateName
    healthy: bool
    since: Epoch
    checked_at: Epoch
    latency_ms: Annotated[float, Field(ge=0)] | None = None
    detail: Text = ""
    target: Text = ""
    passes: Annotated[int, Field(ge=0)] = 0
    nodes_ready: list[NodeName] | None = None  # linstor: nodes whose satellite is ONLINE
    published_by: Annotated[str, Field(max_length=63)] = ""


class HookStatus(BaseModel):
    """Whether a node's hookscript file is in place (part of NodeStatus)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    path: Annotated[str, Field(max_length=4096)]
    exists: bool
    executable: bool


class NodeStatus(Message):
    """`node/<node>/status` (retained): a node agent's availability; its Last Will says offline."""

    KIND = t.NODE_STATUS
    time: Epoch
    node: NodeName
    state: Literal["online", "offline"]
    boot_id: Annotated[str, Field(max_length=64)] = ""
    version: Annotated[str, Field(max_length=64)] = ""
    hook: HookStatus | None = None
    spooled: Annotated[int, Field(ge=0)] = 0


class NodeEvent(Message):
    """`node/<node>/event`: a node booted or is shutting down."""

    KIND = t.NODE_EVENT
    time: Epoch
    node: NodeName
    kind: Literal["boot", "shutdown"]
    boot_id: Annotated[str, Field(max_length=64)] = ""


class CoordinatorStatus(Message):
    """`coordinator/status` (retained): who leads, since when, and a summary for the CLI."""

    KIND = t.COORDINATOR_STATUS
    time: Epoch
    node: NodeName
    since: Epoch
    version: Annotated[str, Field(max_length=64)] = ""
    heartbeat_s: Annotated[float, Field(gt=0)] = 30.0
    held: Annotated[int, Field(ge=0)] = 0
    releasing: Annotated[int, Field(ge=0)] = 0
    failed: Annotated[int, Field(ge=0)] = 0
    state: Literal["leader", "stopped"] = "leader"


class Command(Message):
    """`cmd/<verb>`: an admin's request; the coordinator answers on `coordinator/reply/<event_id>`."""

    KIND = t.COMMAND
    time: Epoch
    verb: Literal["release", "drop"]
    vmids: Annotated[list[VmId], Field(max_length=10_000)] = []
    all: bool = False
    force: bool = False
    requested_by: Annotated[str, Field(max_length=256)] = ""


class ReplyItem(BaseModel):
    """What the coordinator did with one VMID of a command."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    vmid: VmId
    outcome: Literal["released", "ticket", "dropped", "unknown", "not-held", "refused", "error"]
    detail: Text = ""


class Reply(Message):
    """`coordinator/reply/<request id>`: the coordinator's answer to one command."""

    KIND = t.REPLY
    time: Epoch
    request_id: Annotated[str, AfterValidator(lambda v: check_name(v, "request id"))]
    ok: bool
    message: Text = ""
    items: Annotated[list[ReplyItem], Field(max_length=10_000)] = []
    node: Annotated[str, Field(max_length=63)] = ""


class Ticket(Message):
    """`ticket/<vmid>` (retained): a one-shot forced release the hook honours until `expires`."""

    KIND = t.TICKET
    time: Epoch
    vmid: VmId
    expires: Epoch
    requested_by: Annotated[str, Field(max_length=256)] = ""


class Cleared(BaseModel):
    """An empty retained payload: the retained state at `ref` was cleared."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    ref: t.TopicRef


MODELS: dict[str, type[Message]] = {
    m.KIND: m
    for m in (
        GuestEvent,
        HeldStart,
        GateHealth,
        NodeStatus,
        NodeEvent,
        CoordinatorStatus,
        Command,
        Reply,
        Ticket,
    )
}
_KEY_FIELD = {
    t.GUEST_EVENT: "vmid",
    t.HELD: "vmid",
    t.TICKET: "vmid",
    t.GATE_HEALTH: "gate",
    t.NODE_STATUS: "node",
    t.NODE_EVENT: "node",
    t.COMMAND: "verb",
    t.REPLY: "request_id",
}
_CLEARABLE = {t.HELD, t.TICKET, t.GATE_HEALTH, t.NODE_STATUS, t.COORDINATOR_STATUS}


def _short(payload: bytes) -> str:
    text = payload[:120].decode("utf-8", "replace")
    return text + ("..." if len(payload) > 120 else "")


def decode(topics: t.Topics, topic: str, payload: bytes) -> Message | Cleared:
    """Validate one bus message; MessageError says why it is not valid (never any other error)."""
    try:
        ref = topics.parse(topic)
    except TopicError as exc:
        raise MessageError(str(exc)) from None
    if not payload:
        if ref.kind in _CLEARABLE:
            return Cleared(ref=ref)
        raise MessageError(f"{topic}: empty payload")
    if len(payload) > MAX_PAYLOAD:
        raise MessageError(f"{topic}: payload of {len(payload)} bytes is larger than {MAX_PAYLOAD}")
    model = MODELS[ref.kind]
    msg = _fast(model, payload)
    if msg is None:
        msg = _checked(model, topic, payload)
    key_field = _KEY_FIELD.get(ref.kind)
    if key_field is not None and getattr(msg, key_field) != ref.key:
        raise MessageError(
            f"{topic}: payload {key_field}={getattr(msg, key_field)!r} does not match the topic"
        )
    return msg


def _fast(model: type[Message], payload: bytes) -> Message | None:
    """`payload` parsed and validated in one pass (a third of the cost), or None: then `_checked` decides.

    pydantic's JSON parser takes a subset of what json.loads does (no UTF-16, BOM, NaN or lone
    surrogates) and gives the same values; what it refuses goes the long way, so the outcome and
    every error message stay those of `_checked`. The version must be given, not defaulted.
    """
    try:
        msg = model.model_validate_json(payload)
    except ValidationError:
        return None
    return msg if "v" in msg.model_fields_set else None


def _checked(model: type[Message], topic: str, payload: bytes) -> Message:
    """`payload` decoded step by step, for a precise MessageError (or the odd payload only it takes)."""
    try:
        data: Any = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageError(f"{topic}: not JSON ({exc}): {_short(payload)}") from None
    if not isinstance(data, dict):
        raise MessageError(f"{topic}: not a JSON object: {_short(payload)}")
    if data.get("v") != SCHEMA_VERSION:
        raise MessageError(f"{topic}: unsupported schema version v={data.get('v')!r}")
    try:
        msg = model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(payload)'}: {e['msg']}"
            for e in exc.errors(include_url=False)[:5]
        )
        raise MessageError(f"{topic}: invalid {model.__name__}: {problems}") from None
    return msg
