"""Property-based fuzzing of everything a peer can put on a topic: data items, control messages
and model chunks, through the decoders and through a live agent's handlers.

What must hold for any payload: the decoder returns a valid message or raises MessageError (never
another exception), accepts no NaN or infinity, and an agent's handler never raises, acknowledges
every data message exactly once and changes no state for a rejected one."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jellybean.agents.agent import Agent, AgentOptions
from jellybean.agents.items import Item, MessageError, decode_item, encode_item
from jellybean.agents.messages import (
    Assignment,
    Heartbeat,
    Metrics,
    OperatorMetrics,
    Task,
    decode_chunk,
    encode_chunk,
    parse_message,
)

import numpy as np

# Deterministic and bounded: the same cases on every run, no example database, no deadline
# (a loaded CI machine is slow, not wrong).
FUZZ = settings(max_examples=300, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
CASES: dict[str, int] = {}


def _count(name: str) -> None:
    CASES[name] = CASES.get(name, 0) + 1


def _valid_item() -> bytes:
    return encode_item(Item("S01/c001", 7, 1_790_000_000.25, "features", meta={"boxes": [[1.0, 2.0, 3.0, 4.0, 0.9]]},
                            arrays={"embeddings": np.ones((1, 4), np.float16)}, blobs=[b"\xff\xd8jpeg"],
                            session="r1"))


def _valid_controls() -> list[bytes]:
    task = Task(operator="reid", variant="v", runtime="reid-embedder", workers=2, batch=4, max_batch_latency_ms=5)
    return [
        Assignment(agent="a1", site="hub", version=3, plan="p", workflow="w", tasks=[task],
                   routing={"detect->reid": {"hub": {"cloud": 1.0}}}, placements={"reid": {"hub": 1.0}},
                   downstream={"reid": ["track"]}, drop_after_ms=5000).to_bytes(),
        Heartbeat(agent="a1", seq=4, assignment_version=3, running=["reid"]).to_bytes(),
        Metrics(agent="a1", site="hub", interval_s=2.0, operators=[OperatorMetrics(operator="reid", items_in=3)],
                bytes_out={"cloud": 10}).to_bytes(),
    ]


# A JSON value of any shape, with the numbers a fuzzer loves.
_numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-2**70, max_value=2**70),
                     st.sampled_from([0, -1, 1e308, -1e308, 2**53 + 1]))
_json = st.recursive(st.one_of(st.none(), st.booleans(), _numbers, st.text(max_size=20)),
                     lambda inner: st.one_of(st.lists(inner, max_size=4),
                                             st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                     max_leaves=12)


def _mutate_json(doc: dict, data) -> dict:
    """Replace, drop or add one field (possibly nested) of a JSON object."""
    doc = json.loads(json.dumps(doc))
    target = doc
    path = []
    while isinstance(target, dict) and target and data.draw(st.booleans(), label="descend"):
        key = data.draw(st.sampled_from(sorted(target)), label="key")
        if not isinstance(target[key], dict) or not target[key]:
            break
        path.append(key)
        target = target[key]
    action = data.draw(st.sampled_from(["replace", "drop", "add"]), label="action")
    if action == "add" or not target:
        target[data.draw(st.text(max_size=8), label="new key")] = data.draw(_json, label="new value")
    else:
        key = data.draw(st.sampled_from(sorted(target)), label="field")
        if action == "drop":
            del target[key]
        else:
            target[key] = data.draw(_json, label="value")
    return doc


def _dumps(doc) -> bytes:
    return json.dumps(doc, allow_nan=True).encode()


def _finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    return True


def _item_from_header(header: dict, body: bytes) -> bytes:
    head = _dumps(header)
    return b"JBD\x02" + len(head).to_bytes(4, "big") + head + body


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_are_rejected_cleanly(payload):
    _count("random bytes")
    for decode in (lambda p: decode_item(p, "t"), lambda p: parse_message(p, "t"), lambda p: decode_chunk(p, "t")):
        try:
            decode(payload)
        except MessageError:
            pass


@FUZZ
@given(st.data())
def test_mutated_item_headers_decode_or_fail_with_a_message_error(data):
    _count("item headers")
    valid = _valid_item()
    head_len = int.from_bytes(valid[4:8], "big")
    header, body = json.loads(valid[8:8 + head_len]), valid[8 + head_len:]
    payload = _item_from_header(_mutate_json(header, data), body)
    try:
        item = decode_item(payload, "jb/v1/data/hub/reid")
    except MessageError as exc:
        assert "jb/v1/data/hub/reid" in str(exc)
        return
    assert math.isfinite(item.capture_ts) and item.frame >= 0
    assert _finite(item.meta) and _finite(item.trace)


@FUZZ
@given(st.data())
def test_mutated_item_bytes_decode_or_fail_with_a_message_error(data):
    _count("item bytes")
    valid = bytearray(_valid_item())
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        at = data.draw(st.integers(0, len(valid) - 1), label="at")
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]), label="edit")
        if action == "flip":
            valid[at] ^= data.draw(st.integers(1, 255), label="xor")
        elif action == "cut":
            del valid[at:]
            if not valid:
                break
        else:
            valid[at:at] = data.draw(st.binary(min_size=1, max_size=8), label="bytes")
    try:
        item = decode_item(bytes(valid), "t")
    except MessageError:
        return
    assert math.isfinite(item.capture_ts)


@FUZZ
@given(st.data())
def test_mutated_control_messages_parse_or_fail_with_a_message_error(data):
    _count("control messages")
    original = data.draw(st.sampled_from(_valid_controls()), label="message")
    doc = _mutate_json(json.loads(original), data)
    try:
        message = parse_message(_dumps(doc), "jb/v1/agents/a1/heartbeat")
    except MessageError:
        return
    assert _finite(message.model_dump())


@FUZZ
@given(st.data())
def test_mutated_model_chunks_fail_with_a_message_error(data):
    _count("model chunks")
    chunk = encode_chunk("ab" * 32, "m.onnx", 0, 1, 5, b"hello")
    head_len = int.from_bytes(chunk[4:8], "big")
    header = _mutate_json(json.loads(chunk[8:8 + head_len]), data)
    head = _dumps(header)
    try:
        decode_chunk(b"JBM\x01" + len(head).to_bytes(4, "big") + head + b"hello", "t")
    except MessageError:
        pass


class _Ack:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def test_an_agent_survives_fuzzed_messages_on_every_topic_it_reads(tmp_path):
    """A live agent object (not connected: the handlers are what the network thread calls)."""
    agent = Agent(AgentOptions(name="a1", hardware="hw", broker="mqtt://127.0.0.1:1", cache_dir=tmp_path))
    valid_item = _valid_item()

    @FUZZ
    @given(st.data())
    def run(data):
        _count("agent handlers")
        kind = data.draw(st.sampled_from(["data", "assignment", "chunk"]), label="topic")
        raw = data.draw(st.one_of(st.binary(max_size=200), st.just(valid_item),
                                  st.builds(lambda d: _dumps(d), _json)), label="payload")
        if kind == "data":
            ack = _Ack()
            agent._on_data("jb/v1/data/a1/reid", raw, ack)
            # With no assignment an item is held for its task (acknowledged later), never lost;
            # anything else is rejected and acknowledged at once.
            held = sum(1 for h in agent._held if h.ack is ack)
            assert ack.calls + held == 1
        elif kind == "assignment":
            agent._on_assignment("jb/v1/assign/a1", raw)
        else:
            agent._on_chunk("jb/v1/models/a1/x", raw)
        assert agent.assignment is None or math.isfinite(agent.assignment.drop_after_ms)

    run()
    assert agent._pending.empty() or all(math.isfinite(m.drop_after_ms) for m in list(agent._pending.queue) if m)


def test_zz_report_how_many_cases_ran():
    """Runs last in this module: how many fuzz cases the tests above ran (pytest -s shows it)."""
    print(f"\nMQTT payload fuzz cases: {CASES} ({sum(CASES.values())} in all)")
    assert sum(CASES.values()) >= 1000
