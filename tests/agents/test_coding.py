"""An agent's part in redundancy: what it codes as a producer, keeps as a consumer, and rebuilds."""

from __future__ import annotations

import time

import cv2
import numpy as np

from jellybean.agents.coding import Coding
from jellybean.agents.items import Item
from jellybean.agents.messages import Assignment, ParityRun
from jellybean.parity.groups import META, OUTPUT_KIND, QUERY_KIND, members_of


def _assignment(version=1, parity=True, group_wait_ms=100.0) -> Assignment:
    runs = {"reid": ParityRun(operator="reid.parity", k=2, group_wait_ms=group_wait_ms, decode_wait_ms=0.0)}
    return Assignment(agent="a", site="s", version=version, plan="p", workflow="w",
                      downstream={"detect": ["reid"], "reid": ["track"], "reid.parity": ["track"]},
                      parity=runs if parity else {})


def _det(frame: int, crops: int = 1) -> Item:
    blob = cv2.imencode(".jpg", np.full((96, 96, 3), 40 * frame % 255, np.uint8))[1].tobytes()
    return Item("cam", frame, time.time(), kind="detections", meta={"boxes": [[0, 0, 1, 1, 1]] * crops},
                blobs=[blob] * crops, trace=[["s", "detect", 0.0, 0.0]])


def _features(det: Item, vec: np.ndarray) -> Item:
    out = det.derive("features", arrays={"embeddings": np.tile(vec, (len(det.blobs), 1)).astype(np.float16)})
    out.trace.append(["s", "reid", 0.0, 0.0])
    return out


def test_a_producer_codes_every_k_items_it_sends_to_the_protected_operator():
    c = Coding("edge-1", "s")
    c.update(_assignment())
    assert c.encode("detect", "track", _det(1)) is False         # not protected
    assert c.encode("detect", "reid", _det(1)) is False and not c.wake.is_set()
    assert c.next_due() is not None and c.next_due() > time.monotonic()   # a partial group waits
    # The item that fills a group is not held up by the coding: it is left for the coding thread.
    assert c.encode("detect", "reid", _det(2)) is True and c.wake.is_set()
    assert c.next_due() == 0.0
    (edge, op, query), = c.tick()[0]
    assert (edge, op, query.kind) == ("detect->reid.parity", "reid.parity", QUERY_KIND)
    assert [m["frame"] for m in members_of(query)] == [1, 2] and query.stream == "parity/edge-1"
    assert c.tick()[0] == [] and c.next_due() is None


def test_a_partial_group_is_coded_after_its_wait_and_when_redundancy_ends():
    c = Coding("edge-1", "s")
    c.update(_assignment(group_wait_ms=30.0))
    c.encode("detect", "reid", _det(1))
    assert c.tick()[0] == []
    deadline = time.monotonic() + 5
    while not (queries := c.tick()[0]) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [m["frame"] for m in members_of(queries[0][2])] == [1]
    c.encode("detect", "reid", _det(3))
    flushed = c.update(_assignment(version=2, parity=False))    # the group in hand is coded, not lost
    assert [m["frame"] for m in members_of(flushed[0][2])] == [3] and not c.active


def test_the_last_group_of_a_batch_is_coded_at_once_not_after_the_next_batch():
    c = Coding("edge-1", "s")
    c.update(_assignment(group_wait_ms=10_000.0))
    for frame in (1, 2, 3):                       # one batch of three
        c.encode("detect", "reid", _det(frame))
    c.seal("reid")
    c.seal("track")                               # not protected: nothing to seal
    assert c.wake.is_set() and c.next_due() == 0.0
    queries = [q for _, _, q in c.tick()[0]]
    assert [[m["frame"] for m in members_of(q)] for q in queries] == [[1, 2], [3]]
    c.wake.clear()
    c.seal("reid")                                # nothing open: no query, no wake-up
    assert not c.wake.is_set() and c.tick()[0] == [] and c.next_due() is None


def test_a_consumer_keeps_parity_outputs_passes_data_on_and_rebuilds_the_missing_one():
    c = Coding("cloud-1", "s")
    c.update(_assignment())
    one, two = _det(1), _det(2)
    v1, v2 = np.eye(128, dtype=np.float32)[0], np.eye(128, dtype=np.float32)[1]
    parity = Item("parity/edge-1", 1, time.time(), kind=OUTPUT_KIND,
                  meta={META: {"k": 2, "members": [
                      {"stream": "cam", "session": "", "frame": f, "capture_ts": d.capture_ts, "crops": 1,
                       "meta": {"boxes": d.meta["boxes"]}} for f, d in ((1, one), (2, two))]}},
                  arrays={OUTPUT_KIND: (v1 + v2)[None, :]}, trace=[["s", "reid.parity", 0.0, 0.0]])
    assert c.arrived("reid.parity", Item("parity/x", 1, 1.0, kind=QUERY_KIND)) is False  # the parity worker's input
    assert c.arrived("track", _features(one, v1)) is False     # data passes on to the tracker
    assert c.next_due() is None                                # no parity output yet: nothing to decide
    c.wake.clear()
    assert c.arrived("track", parity) is True                  # the parity output ends here
    assert c.wake.is_set() and c.next_due() <= time.monotonic()   # decode_wait_ms 0: due now
    (consumer, rebuilt), = c.tick()[1]
    assert consumer == "track" and rebuilt.key == two.key and rebuilt.meta["reconstructed"] == ["reid"]
    assert np.allclose(rebuilt.arrays["embeddings"].astype(np.float32), v2[None, :], atol=1e-3)
    assert c.counts()["rebuilt"] == 1 and c.counts()["parity outputs"] == 1
    # A parity query dropped on its way arrives as a tombstone and is counted, not handed on.
    assert c.arrived("track", Item("parity/x", 2, 1.0, kind=QUERY_KIND).tombstone("no site runs reid.parity"))
    assert c.counts()["dropped_parity"] == 1
