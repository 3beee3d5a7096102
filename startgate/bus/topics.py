"""The topic scheme: the one module that builds and parses every startgate topic name.

All topics live under `<topic_prefix>/<cluster>/` (design.md, "Contracts"). Every variable part
(VMID, node, gate name, request id) is validated first, so nothing read from a message, a guest
config or a task log can inject a level (`/`), a wildcard (`+`, `#`) or NUL.

This module is on the hookscript's hot path: it imports only the standard library.
"""

from __future__ import annotations

from startgate.errors import TopicError
from startgate.names import check_name, check_vmid

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: hot path (see startgate._lite)

if TYPE_CHECKING:
    from collections.abc import Callable

# Topic kinds, as they appear in `TopicRef.kind`.
GUEST_EVENT = "guest_event"  # guest/<vmid>/event
HELD = "held"  # held/<vmid>                (retained)
GATE_HEALTH = "gate_health"  # gate/<name>/health   (retained)
NODE_STATUS = "node_status"  # node/<node>/status   (retained, Last Will)
NODE_EVENT = "node_event"  # node/<node>/event
COORDINATOR_STATUS = "coordinator_status"  # coordinator/status (retained)
REPLY = "reply"  # coordinator/reply/<request id>: the coordinator's answer to a command
COMMAND = "command"  # cmd/<verb>
TICKET = "ticket"  # ticket/<vmid>              (retained): a one-shot forced release

VERBS = ("release", "drop")


class TopicRef:
    """What a parsed topic names: its kind and its variable part (VMID, name, verb or None)."""

    __slots__ = ("key", "kind")

    def __init__(self, kind: str, key: int | str | None) -> None:
        self.kind = kind
        self.key = key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TopicRef) and (self.kind, self.key) == (other.kind, other.key)

    def __hash__(self) -> int:
        return hash((self.kind, self.key))

    def __repr__(self) -> str:
        return f"TopicRef({self.kind!r}, {self.key!r})"


def _vmid(value: object) -> int:
    try:
        return check_vmid(value)
    except ValueError as exc:
        raise TopicError(str(exc)) from None


def _name(value: str, what: str) -> str:
    try:
        return check_name(value, what)
    except ValueError as exc:
        raise TopicError(str(exc)) from None


def _verb(value: str) -> str:
    if value not in VERBS:
        raise TopicError(f"unknown command verb {value!r}")
    return value


_VAR = None  # a variable level in a topic shape
# Every topic under the cluster's base, as data: (levels, kind, validator of the variable level).
_SHAPES: tuple[tuple[tuple[str | None, ...], str, Callable[[str], int | str]], ...] = (
    (("guest", _VAR, "event"), GUEST_EVENT, _vmid),
    (("held", _VAR), HELD, _vmid),
    (("gate", _VAR, "health"), GATE_HEALTH, lambda v: _name(v, "gate name")),
    (("node", _VAR, "status"), NODE_STATUS, lambda v: _name(v, "node name")),
    (("node", _VAR, "event"), NODE_EVENT, lambda v: _name(v, "node name")),
    (("coordinator", "status"), COORDINATOR_STATUS, str),
    (("coordinator", "reply", _VAR), REPLY, lambda v: _name(v, "request id")),
    (("cmd", _VAR), COMMAND, _verb),
    (("ticket", _VAR), TICKET, _vmid),
)


_PARSED_MAX = 16384  # topics remembered by `Topics.parse`


class Topics:
    """Topic names for one cluster under one prefix."""

    __slots__ = ("_parsed", "base")

    def __init__(self, prefix: str, cluster: str) -> None:
        parts = [*prefix.split("/"), cluster]
        self.base = "/".join(_name(p, "topic part") for p in parts)
        # The coordinator parses every message's topic, and the same few topics per guest come
        # again and again: what parsed once is looked up. Bounded (emptied when full), so a
        # flood of made-up topics cannot grow it.
        self._parsed: dict[str, TopicRef] = {}

    # -- names ---------------------------------------------------------------------------------
    def guest_event(self, vmid: int) -> str:
        """`guest/<vmid>/event`: a guest's lifecycle event."""
        return f"{self.base}/guest/{_vmid(vmid)}/event"

    def held(self, vmid: int) -> str:
        """`held/<vmid>`: the retained record of a held start."""
        return f"{self.base}/held/{_vmid(vmid)}"

    def gate_health(self, gate: str) -> str:
        """`gate/<name>/health`: a gate's retained health."""
        return f"{self.base}/gate/{_name(gate, 'gate name')}/health"

    def node_status(self, node: str) -> str:
        """`node/<node>/status`: a node's retained availability (its agent's Last Will)."""
        return f"{self.base}/node/{_name(node, 'node name')}/status"

    def node_event(self, node: str) -> str:
        """`node/<node>/event`: a node's boot and shutdown events."""
        return f"{self.base}/node/{_name(node, 'node name')}/event"

    def coordinator_status(self) -> str:
        """`coordinator/status`: the leader coordinator's retained status."""
        return f"{self.base}/coordinator/status"

    def reply(self, request_id: str) -> str:
        """`coordinator/reply/<request id>`: the answer to one command."""
        return f"{self.base}/coordinator/reply/{_name(request_id, 'request id')}"

    def command(self, verb: str) -> str:
        """`cmd/<verb>`: a request from the CLI (release, drop)."""
        return f"{self.base}/cmd/{_verb(verb)}"

    def ticket(self, vmid: int) -> str:
        """`ticket/<vmid>`: a retained one-shot release ticket the hook honours."""
        return f"{self.base}/ticket/{_vmid(vmid)}"

    # -- subscriptions -------------------------------------------------------------------------
    @property
    def everything(self) -> str:
        """Every startgate topic of this cluster."""
        return f"{self.base}/#"

    @property
    def all_held(self) -> str:
        """Every held record."""
        return f"{self.base}/held/+"

    @property
    def all_gate_health(self) -> str:
        """Every gate's health."""
        return f"{self.base}/gate/+/health"

    @property
    def all_guest_events(self) -> str:
        """Every guest's lifecycle events."""
        return f"{self.base}/guest/+/event"

    @property
    def all_node_status(self) -> str:
        """Every node's status."""
        return f"{self.base}/node/+/status"

    @property
    def all_node_events(self) -> str:
        """Every node's events."""
        return f"{self.base}/node/+/event"

    @property
    def all_commands(self) -> str:
        """Every command."""
        return f"{self.base}/cmd/+"

    @property
    def all_tickets(self) -> str:
        """Every release ticket."""
        return f"{self.base}/ticket/+"

    # -- parsing -------------------------------------------------------------------------------
    def parse(self, topic: str) -> TopicRef:
        """What `topic` names; TopicError if it is not one of ours or a part is invalid."""
        ref = self._parsed.get(topic)
        if ref is None:
            ref = self._parse(topic)
            if len(self._parsed) >= _PARSED_MAX:
                self._parsed.clear()
            self._parsed[topic] = ref
        return ref

    def _parse(self, topic: str) -> TopicRef:
        prefix = self.base + "/"
        if not topic.startswith(prefix):
            raise TopicError(f"topic {topic[:200]!r} is not under {self.base!r}")
        parts = topic[len(prefix) :].split("/")
        for shape, kind, check in _SHAPES:
            if len(shape) == len(parts) and all(s in (_VAR, p) for s, p in zip(shape, parts, strict=True)):
                var = [p for s, p in zip(shape, parts, strict=True) if s == _VAR]
                return TopicRef(kind, check(var[0]) if var else None)
        raise TopicError(f"topic {topic[:200]!r} is not a startgate topic")
