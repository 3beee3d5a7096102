"""The topic scheme: every name built, parsed back, and injection refused."""

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from startgate.bus import topics as t
from startgate.errors import TopicError

TOPICS = t.Topics("startgate", "pve1")


@pytest.mark.parametrize(
    ("topic", "ref"),
    [
        (TOPICS.guest_event(101), t.TopicRef(t.GUEST_EVENT, 101)),
        (TOPICS.held(101), t.TopicRef(t.HELD, 101)),
        (TOPICS.gate_health("linstor"), t.TopicRef(t.GATE_HEALTH, "linstor")),
        (TOPICS.node_status("pve1"), t.TopicRef(t.NODE_STATUS, "pve1")),
        (TOPICS.node_event("pve-2"), t.TopicRef(t.NODE_EVENT, "pve-2")),
        (TOPICS.coordinator_status(), t.TopicRef(t.COORDINATOR_STATUS, None)),
        (TOPICS.reply("a1b2c3d4"), t.TopicRef(t.REPLY, "a1b2c3d4")),
        (TOPICS.command("release"), t.TopicRef(t.COMMAND, "release")),
        (TOPICS.command("drop"), t.TopicRef(t.COMMAND, "drop")),
        (TOPICS.ticket(999999999), t.TopicRef(t.TICKET, 999999999)),
    ],
)
def test_every_topic_parses_back_to_what_built_it(topic: str, ref: t.TopicRef) -> None:
    """A built topic parses back to its kind and key."""
    assert topic.startswith("startgate/pve1/")
    assert TOPICS.parse(topic) == ref


def test_the_contract_names_are_stable() -> None:
    """The topic names of design.md's table are pinned."""
    assert TOPICS.guest_event(101) == "startgate/pve1/guest/101/event"
    assert TOPICS.held(101) == "startgate/pve1/held/101"
    assert TOPICS.gate_health("linstor") == "startgate/pve1/gate/linstor/health"
    assert TOPICS.node_status("pve1") == "startgate/pve1/node/pve1/status"
    assert TOPICS.node_event("pve1") == "startgate/pve1/node/pve1/event"
    assert TOPICS.coordinator_status() == "startgate/pve1/coordinator/status"
    assert TOPICS.command("release") == "startgate/pve1/cmd/release"
    assert t.Topics("site/a", "c1").held(100) == "site/a/c1/held/100"


@pytest.mark.parametrize("bad", ["a/b", "a+", "#", "a\x00b", "", " ", "..", "a b", "ä", "x" * 64, "+/#"])
def test_names_that_would_inject_topic_syntax_are_rejected(bad: str) -> None:
    """Node, gate and request names with `/`, `+`, `#`, NUL or odd characters are refused."""
    with pytest.raises(TopicError):
        TOPICS.node_status(bad)
    with pytest.raises(TopicError):
        TOPICS.gate_health(bad)
    with pytest.raises(TopicError):
        TOPICS.reply(bad)
    with pytest.raises(TopicError):
        t.Topics("startgate", bad)


@pytest.mark.parametrize("bad", [99, 1_000_000_000, -1, "101/x", "+", "#", "1e3", True, "\u0661\u0660\u0661"])
def test_vmids_outside_the_proxmox_range_or_not_numbers_are_rejected(bad: object) -> None:
    """A VMID must be an integer in 100..999999999."""
    with pytest.raises(TopicError):
        TOPICS.held(bad)  # type: ignore[arg-type]  # the point is feeding the wrong type


@pytest.mark.parametrize(
    "topic",
    [
        "other/pve1/held/101",
        "startgate/pve1/held/101/extra",
        "startgate/pve1/held/+",
        "startgate/pve1/cmd/reboot",
        "startgate/pve1/guest/101/status",
        "startgate/pve1",
        "startgate/pve1/",
    ],
)
def test_foreign_or_malformed_topics_do_not_parse(topic: str) -> None:
    """Topics that are not ours, or have bad parts, raise TopicError."""
    with pytest.raises(TopicError):
        TOPICS.parse(topic)


@given(st.text(max_size=80))
def test_parse_never_raises_anything_but_topic_error(topic: str) -> None:
    """Arbitrary text either parses or raises TopicError."""
    with contextlib.suppress(TopicError):
        TOPICS.parse(f"startgate/pve1/{topic}")


def test_parsed_topics_are_remembered_within_a_bound_and_refusals_are_not() -> None:
    """A topic parses to the same ref again; made-up topics cannot grow the memory past its bound."""
    topics = t.Topics("startgate", "pve1")
    assert topics.parse(topics.held(101)) == t.TopicRef(t.HELD, 101)
    assert topics.parse(topics.held(101)) == t.TopicRef(t.HELD, 101)
    for _ in range(2):
        with pytest.raises(TopicError):
            topics.parse("startgate/pve1/held/x")
    for vmid in range(100, 100 + t._PARSED_MAX + 10):
        assert topics.parse(topics.guest_event(vmid)).key == vmid
    assert len(topics._parsed) <= t._PARSED_MAX
