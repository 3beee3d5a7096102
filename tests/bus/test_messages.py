"""Message models: the wire format pinned by golden files, and decode's handling of bad payloads."""

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from startgate.bus import messages as m
from startgate.bus.topics import Topics
from startgate.errors import MessageError

GOLDEN = Path(__file__).parent / "golden"
TOPICS = Topics("startgate", "pve1")
TOPIC_OF = {
    "guest_event": TOPICS.guest_event(101),
    "held": TOPICS.held(101),
    "gate_health": TOPICS.gate_health("linstor"),
    "node_status": TOPICS.node_status("pve1"),
    "node_event": TOPICS.node_event("pve1"),
    "coordinator_status": TOPICS.coordinator_status(),
    "command": TOPICS.command("release"),
    "reply": TOPICS.reply("fedcba9876543210fedcba9876543210"),
    "ticket": TOPICS.ticket(101),
}


def test_there_is_a_golden_file_for_every_model() -> None:
    """Each model kind has a golden wire sample."""
    assert {p.stem for p in GOLDEN.glob("*.json")} == set(m.MODELS)


@pytest.mark.parametrize("kind", sorted(m.MODELS))
def test_golden_payloads_decode_and_re_encode_identically(kind: str) -> None:
    """The golden JSON decodes on its topic and encodes back to the same object, field for field."""
    raw = (GOLDEN / f"{kind}.json").read_bytes()
    msg = m.decode(TOPICS, TOPIC_OF[kind], raw)
    assert isinstance(msg, m.MODELS[kind])
    assert list(json.loads(msg.to_json())) == list(json.loads(raw))
    assert json.loads(msg.to_json()) == json.loads(raw)


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"v": 2}', "schema version"),
        (b'{"v": 1}', "invalid HeldStart"),
        (b"x" * (1024 * 1024), "larger than"),
    ],
)
def test_bad_payloads_raise_message_error_naming_the_topic(payload: bytes, why: str) -> None:
    """Garbage, wrong versions, missing fields and huge payloads are refused with a reason."""
    with pytest.raises(MessageError, match=why) as info:
        m.decode(TOPICS, TOPICS.held(101), payload)
    assert "held/101" in str(info.value)


def test_a_payload_whose_key_contradicts_its_topic_is_refused() -> None:
    """A held record for VM 102 published on held/101 is not believed."""
    raw = json.loads((GOLDEN / "held.json").read_text())
    raw["vmid"] = 102
    with pytest.raises(MessageError, match="does not match the topic"):
        m.decode(TOPICS, TOPICS.held(101), json.dumps(raw).encode())


def test_unknown_fields_are_refused() -> None:
    """extra='forbid': a field we do not know is an error, not silently ignored."""
    raw = json.loads((GOLDEN / "ticket.json").read_text())
    raw["surprise"] = 1
    with pytest.raises(MessageError, match="surprise"):
        m.decode(TOPICS, TOPICS.ticket(101), json.dumps(raw).encode())


def test_an_empty_retained_payload_is_a_clear() -> None:
    """An empty payload on a retained topic means the state was cleared."""
    msg = m.decode(TOPICS, TOPICS.held(101), b"")
    assert isinstance(msg, m.Cleared)
    assert msg.ref.key == 101
    with pytest.raises(MessageError, match="empty"):
        m.decode(TOPICS, TOPICS.guest_event(101), b"")


def test_node_names_in_payloads_are_validated() -> None:
    """A node name with topic syntax inside a payload is refused."""
    raw = json.loads((GOLDEN / "guest_event.json").read_text())
    raw["node"] = "pve1/#"
    with pytest.raises(MessageError, match="node"):
        m.decode(TOPICS, TOPICS.guest_event(101), json.dumps(raw).encode())


@given(st.binary(max_size=2048))
def test_decode_raises_only_message_error_on_arbitrary_bytes(payload: bytes) -> None:
    """No byte string makes decode raise anything but MessageError."""
    for topic in TOPIC_OF.values():
        with contextlib.suppress(MessageError):
            m.decode(TOPICS, topic, payload)


@given(
    st.dictionaries(st.sampled_from(["v", "vmid", "node", "gates", "time", "x"]), st.integers() | st.text())
)
def test_decode_raises_only_message_error_on_arbitrary_objects(obj: dict[str, object]) -> None:
    """No JSON object makes decode raise anything but MessageError."""
    with contextlib.suppress(MessageError):
        m.decode(TOPICS, TOPICS.held(101), json.dumps(obj).encode())


def test_a_payload_without_a_version_is_refused_although_the_model_has_a_default() -> None:
    """`v` must be on the wire: the one-pass validation's default of 1 does not let it through."""
    raw = json.loads((GOLDEN / "held.json").read_text())
    del raw["v"]
    with pytest.raises(MessageError, match="schema version"):
        m.decode(TOPICS, TOPICS.held(101), json.dumps(raw).encode())


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
def test_payloads_only_json_loads_takes_still_decode(encoding: str) -> None:
    """A BOM or UTF-16/32, refused by the one-pass parser, decode as before, to the same message."""
    text = (GOLDEN / "guest_event.json").read_text()
    plain = m.decode(TOPICS, TOPIC_OF["guest_event"], text.encode())
    assert m.decode(TOPICS, TOPIC_OF["guest_event"], text.encode(encoding)) == plain


_VALUES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)


@given(st.dictionaries(st.sampled_from(["v", "time", "vmid", "node", "phase", "gates", "ha", "x"]), _VALUES))
def test_the_one_pass_decode_agrees_with_the_step_by_step_one(changes: dict[str, object]) -> None:
    """Whatever the one-pass validation accepts, the step-by-step decode accepts as the same message."""
    raw = json.loads((GOLDEN / "guest_event.json").read_text()) | changes
    payload = json.dumps(raw).encode()
    fast = m._fast(m.GuestEvent, payload)
    if fast is not None:
        assert m._checked(m.GuestEvent, "t", payload) == fast
