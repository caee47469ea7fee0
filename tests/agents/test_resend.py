"""Re-sent requests (jellybean.agents.resend): the producer's table of copies, the replicas'
acknowledgements, and what the agents hand each other on the wire."""

from __future__ import annotations

import numpy as np
import pytest

from jellybean.agents import topics
from jellybean.agents.items import Item, MessageError, decode_item, encode_item
from jellybean.agents.messages import ResendRun
from jellybean.agents.resend import BURST, MAX_PENDING, RESENT, Resender, acknowledgement, served


def _item(frame: int, *, dropped: str | None = None) -> Item:
    return Item(stream="S01/c001", frame=frame, capture_ts=100.0 + frame, kind="detections", session="s1",
                meta={"boxes": [[0, 0, 4, 4]], "t": frame / 10}, arrays={"e": np.ones(3, np.float32)},
                blobs=[b"jpeg"], dropped=dropped, trace=[["edge", "detect", 1.0, 1.1]])


def _resender(after_ms: float = 50.0, times: int = 1, budget: float = 0.2) -> Resender:
    r = Resender()
    r.update({"reid": ResendRun(after_ms=after_ms, times=times, budget=budget)})
    return r


def test_an_item_not_acknowledged_in_time_is_sent_again_marked_and_whole():
    r = _resender(after_ms=50)
    r.sent("detect->reid", "reid", _item(1), now=10.0)
    assert r.due(now=10.049) == []
    [(edge, op, copy)] = r.due(now=10.05)
    assert (edge, op) == ("detect->reid", "reid")
    original = _item(1)
    assert copy.key == original.key and copy.capture_ts == original.capture_ts and copy.blobs == original.blobs
    assert np.array_equal(copy.arrays["e"], original.arrays["e"]) and copy.trace == original.trace
    assert copy.meta[RESENT] == ["reid"] and copy.meta["boxes"] == original.meta["boxes"]
    # times = 1: nothing more for it, and it is no longer kept
    assert r.due(now=99.0) == [] and r.counts() == {"resent": 1, "seen": 0, "waiting": 0, "forgotten": 0,
                                               "throttled": 0}


def test_an_acknowledged_item_is_not_sent_again():
    r = _resender()
    r.sent("detect->reid", "reid", _item(1), now=0.0)
    r.sent("detect->reid", "reid", _item(2), now=0.0)
    assert r.acknowledged("reid", _item(1).key) is True
    assert r.acknowledged("reid", _item(1).key) is False   # a second replica's output: nothing waits
    assert r.acknowledged("detect", _item(2).key) is False  # another operator's key
    assert [c.frame for _, _, c in r.due(now=1.0)] == [2]


def test_times_bounds_the_copies_and_spaces_them_by_after_ms():
    r = _resender(after_ms=100, times=3)
    r.sent("e", "reid", _item(7), now=0.0)
    sent_at = [t for t in np.arange(0.0, 1.0, 0.01) if r.due(now=float(t))]
    assert len(sent_at) == 3
    assert np.allclose(np.diff([0.0, *sent_at]), 0.1, atol=0.011)
    assert r.next_due() is None


def test_the_budget_bounds_the_copies_when_everything_is_late():
    # Every replica slow (nothing acknowledged): after the saved-up burst, copies follow the budget.
    r = _resender(after_ms=10, budget=0.25)
    n = 400
    for f in range(n):
        r.sent("e", "reid", _item(f + 1), now=0.0)
    copies = len(r.due(now=1.0))
    assert copies == int(BURST)   # the saved copies; what the items earned was capped at BURST
    # The refused copies are counted.
    assert r.counts()["throttled"] == n - copies
    steady = _resender(after_ms=10, budget=0.25)
    sent = 0
    for f in range(n):   # one late item in every two; the budget pays for a quarter of all items
        steady.sent("e", "reid", _item(f + 1), now=float(f))
        if f % 2:
            steady.acknowledged("reid", _item(f + 1).key)
        sent += len(steady.due(now=f + 0.5))
    assert abs(sent - (BURST + 0.25 * n)) <= 1.0, sent


def test_tombstones_and_operators_without_resend_are_not_kept():
    r = _resender()
    r.sent("e", "reid", _item(1, dropped="deadline"), now=0.0)
    r.sent("e", "track", _item(2), now=0.0)
    assert r.next_due() is None and r.due(now=5.0) == []


def test_the_table_is_bounded_and_says_what_it_forgot():
    r = _resender()
    for f in range(MAX_PENDING + 5):
        r.sent("e", "reid", _item(f + 1), now=0.0)
    c = r.counts()
    assert c["waiting"] == MAX_PENDING and c["forgotten"] == 5
    assert r.acknowledged("reid", _item(1).key) is False     # the oldest went first
    assert r.acknowledged("reid", _item(6).key) is True


def test_a_new_assignment_without_resend_forgets_the_copies():
    r = _resender()
    r.sent("e", "reid", _item(1), now=0.0)
    r.update({})
    assert not r.active and r.due(now=9.0) == []


def test_the_table_wakes_its_thread_when_it_stops_being_empty():
    r = _resender()
    r.sent("e", "reid", _item(1), now=0.0)
    assert r.wake.is_set()
    r.wake.clear()
    r.sent("e", "reid", _item(2), now=0.0)
    assert not r.wake.is_set()   # an earlier deadline already waits


def test_the_acknowledgement_goes_to_the_producer_named_in_the_trace_and_survives_the_wire():
    out = _item(4).derive("embeddings", meta={"boxes": [[0, 0, 4, 4]]}, arrays={"emb": np.ones((1, 8), np.float32)})
    out.trace.append(["hub", "reid", 2.0, 2.1])
    site, producer, ack = acknowledgement("reid", out)
    assert (site, producer) == ("edge", "detect")
    assert topics.ack(site, producer) == "jb/v1/acks/edge/detect"
    back = decode_item(encode_item(ack), "t")
    assert back.key == out.key and served(back, "t") == "reid" and not back.blobs and not back.arrays


def test_no_acknowledgement_where_a_source_fed_the_operator_or_the_trace_is_unusable():
    fed_by_source = Item(stream="S01/c001", frame=1, capture_ts=0.0, trace=[["edge", "detect", 1.0, 1.1]])
    assert acknowledgement("detect", fed_by_source) is None
    bad = Item(stream="S01/c001", frame=1, capture_ts=0.0, trace=[["edge/#", "detect", 0, 0], ["hub", "reid", 0, 0]])
    assert acknowledgement("reid", bad) is None


@pytest.mark.parametrize("kind,meta", [("frame", {"served": "reid"}), ("seen", {}), ("seen", {"served": 3})])
def test_a_malformed_acknowledgement_is_a_message_error_naming_the_topic(kind, meta):
    with pytest.raises(MessageError, match="jb/v1/acks/edge/detect"):
        served(Item(stream="a", frame=1, capture_ts=0.0, kind=kind, meta=meta), "jb/v1/acks/edge/detect")
