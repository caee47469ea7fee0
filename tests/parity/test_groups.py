"""Coding groups at run time: the encoder's queries and the decoder's rebuilt outputs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from jellybean.agents.items import Item, decode_item, encode_item
from jellybean.parity.groups import (
    META,
    QUERY_KIND,
    REBUILT,
    GroupDecoder,
    GroupEncoder,
    members_of,
)

D = 8


def _crop(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()   # lossless: F below sees exactly these pixels


def _detections(frame: int, crops: int, stream: str = "c1") -> Item:
    return Item(stream, frame, 1000.0 + frame, kind="detections", trace=[["edge", "detect", 1000.0, 1000.0 + frame]],
                meta={"boxes": [[i, i, 10, 10, 0.9] for i in range(crops)], "size": [640, 360], "t": frame / 10},
                blobs=[_crop(frame * 100 + i) for i in range(crops)], session="s")


def _f(blob: bytes) -> np.ndarray:
    """A stand-in base model: a fixed random projection of the pixels, unit-normalised."""
    image = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR).astype(np.float32).ravel()
    w = np.random.default_rng(0).standard_normal((D, image.size)).astype(np.float32)
    v = w @ image
    return v / np.linalg.norm(v)


def _features(det: Item) -> Item:
    emb = np.stack([_f(b) for b in det.blobs]) if det.blobs else np.zeros((0, D), np.float32)
    return det.derive("features", meta={"boxes": det.meta["boxes"], "size": det.meta["size"]},
                      arrays={"embeddings": emb.astype(np.float16)})


def _parity_output(query: Item, dets: dict[tuple, Item]) -> Item:
    """An exact parity model: Σ F over the members that have crop c (blank slots count zero)."""
    members = [dets[(m["stream"], m["session"], m["frame"])] for m in members_of(query)]
    rows = max((len(m.blobs) for m in members), default=0)
    out = np.zeros((rows, D), np.float32)
    for m in members:
        for c, blob in enumerate(m.blobs):
            out[c] += _f(blob)
    return query.derive("parity", meta={META: query.meta[META]}, arrays={"parity": out})


def _pair() -> tuple[Item, Item, Item]:
    """Two items of two crops each, coded as one group of k = 2, and their parity output."""
    enc = GroupEncoder(2, lambda tiles: np.zeros((96, 96, 3), np.uint8), source="e")
    a, b = _detections(1, 2), _detections(2, 2)
    enc.add(a)
    query = enc.add(b)
    return a, b, _parity_output(query, {a.key: a, b.key: b})


def _tiles_seen():
    seen = []

    def encode(tiles):
        seen.append([t is None for t in tiles])
        return np.zeros((96, 96, 3), np.uint8)
    return seen, encode


def test_the_encoder_makes_one_query_per_k_items_with_a_parity_crop_per_position():
    seen, encode = _tiles_seen()
    enc = GroupEncoder(2, encode, source="edge-1", session="x")
    a, b = _detections(1, 3), _detections(2, 1)
    assert enc.add(a, now=0.0) is None
    q = enc.add(b, now=0.01)
    assert q is not None and q.kind == QUERY_KIND and q.stream == "parity/edge-1" and len(q.blobs) == 3
    # Position 0 has both crops, positions 1 and 2 only the first member's: blank slots.
    assert seen == [[False, False], [False, True], [False, True]]
    assert [(m["frame"], m["crops"]) for m in members_of(q)] == [(1, 3), (2, 1)]
    assert q.capture_ts == a.capture_ts
    assert decode_item(encode_item(q)).meta == q.meta        # the manifest survives the wire


def test_a_partial_group_is_flushed_after_its_wait_with_blank_slots():
    seen, encode = _tiles_seen()
    enc = GroupEncoder(4, encode, source="e", max_wait_s=0.1)
    enc.add(_detections(1, 1), now=0.0)
    assert enc.flush(now=0.05) is None
    q = enc.flush(now=0.2)
    assert q is not None and len(members_of(q)) == 1 and seen == [[False, True, True, True]]
    assert enc.add(Item("c1", 9, 1.0, dropped="deadline at detect")) is None   # tombstones are not coded


def test_offer_leaves_the_coding_to_due_full_groups_first_then_a_partial_one_past_its_wait():
    seen, encode = _tiles_seen()
    enc = GroupEncoder(2, encode, source="e", max_wait_s=0.1)
    assert enc.next_due() is None
    assert enc.offer(_detections(1, 1), now=0.0) is False and enc.next_due() == pytest.approx(0.1)
    assert enc.offer(_detections(2, 1), now=0.01) is True and seen == []      # nothing coded on the way
    assert enc.next_due() == 0.0
    enc.offer(_detections(3, 1), now=0.02)
    (q,) = enc.due(now=0.05)                     # the full group; frame 3 waits for its partner
    assert [m["frame"] for m in members_of(q)] == [1, 2] and q.frame == 1 and enc.sent == 1
    assert enc.next_due() == pytest.approx(0.12)
    (late,) = enc.due(now=0.2)
    assert [m["frame"] for m in members_of(late)] == [3] and late.frame == 2
    assert enc.due(now=1.0) == [] and enc.next_due() is None


def test_a_crop_that_will_not_decode_is_a_blank_tile_and_the_rest_are_still_coded():
    seen, encode = _tiles_seen()
    enc = GroupEncoder(2, encode, source="e")
    bad = _detections(2, 2)
    bad.blobs[1] = b""        # OpenCV raises on an empty buffer
    enc.offer(_detections(1, 2))
    enc.offer(bad)
    enc.offer(_detections(3, 1))
    enc.offer(_detections(4, 1))
    first, second = enc.due()
    assert seen == [[False, False], [False, True], [False, False]] and len(first.blobs) == 2
    assert [m["frame"] for m in members_of(second)] == [3, 4]


@pytest.mark.parametrize("k, crops, missing", [
    (2, [3, 1], 0), (2, [3, 1], 1), (4, [2, 0, 5, 1], 2), (4, [2, 0, 5, 1], 1), (4, [1, 1, 1, 1], 3),
])
def test_one_missing_output_is_rebuilt_from_the_parity_and_the_others(k, crops, missing):
    enc = GroupEncoder(k, lambda tiles: np.zeros((96, 96, 3), np.uint8), source="e")
    dets = {}
    query = None
    for i, n in enumerate(crops):
        d = _detections(i + 1, n)
        dets[d.key] = d
        query = enc.add(d, now=0.0) or query
    dec = GroupDecoder(wait_s=0.05)
    lost = list(dets.values())[missing]
    for d in dets.values():
        if d is not lost:
            dec.data(_features(d), now=0.0)
    dec.parity(_parity_output(query, dets), now=0.01)
    assert dec.due(now=0.03) == []                    # still within the wait for the original
    (rebuilt,) = dec.due(now=0.07)
    want = _features(lost)
    assert rebuilt.key == lost.key and rebuilt.kind == "features" and rebuilt.meta[REBUILT] == ["reid"]
    assert rebuilt.meta["boxes"] == lost.meta["boxes"] and rebuilt.meta["t"] == lost.meta["t"]
    assert rebuilt.trace == [*lost.trace, ["", "reid", rebuilt.trace[-1][2], rebuilt.trace[-1][2]]]
    got, ref = rebuilt.arrays["embeddings"].astype(np.float32), want.arrays["embeddings"].astype(np.float32)
    assert got.shape == ref.shape
    if len(ref):
        assert np.min(np.sum(got * ref, axis=1)) > 0.999   # cosine similarity of rebuilt and original
    assert dec.counts.rebuilt == 1 and dec.pending() == 0


def test_an_original_in_time_is_not_rebuilt():
    a, b, parity = _pair()
    dec = GroupDecoder(wait_s=0.05)
    dec.data(_features(a), now=0.0)
    assert dec.next_due() is None                  # no parity output: no deadline
    dec.parity(parity, now=0.0)
    assert dec.next_due() == pytest.approx(0.05)   # b's output is awaited until then
    dec.data(_features(b), now=0.04)
    assert dec.next_due() is None
    assert dec.due(now=1.0) == [] and dec.counts.rebuilt == 0 and dec.pending() == 0
    # A parity output that comes after all its group's outputs is only counted.
    dec.parity(parity, now=1.1)
    assert dec.counts.late_parity == 1 and dec.pending() == 0


def test_a_late_parity_output_rebuilds_at_once_when_the_straggler_is_already_late():
    """The wait runs from the first of the group's outputs, so a parity output that comes after it
    rebuilds the missing one at once (waiting again would only add to the tail ParM cuts)."""
    a, b, parity = _pair()
    dec = GroupDecoder(wait_s=0.05)
    dec.data(_features(a), now=0.0)
    dec.parity(parity, now=0.08)
    assert dec.next_due() == pytest.approx(0.08)
    (rebuilt,) = dec.due(now=0.08)
    assert rebuilt.key == b.key and dec.counts.rebuilt == 1
    # The parity output first: the partner's output then waits out the rest of the same clock.
    dec2 = GroupDecoder(wait_s=0.05)
    dec2.parity(parity, now=0.0)
    dec2.data(_features(a), now=0.03)
    assert dec2.next_due() == pytest.approx(0.05) and dec2.due(now=0.049) == []
    assert [r.key for r in dec2.due(now=0.05)] == [b.key]


def test_without_the_parity_output_or_with_two_missing_nothing_is_rebuilt():
    enc = GroupEncoder(4, lambda tiles: np.zeros((96, 96, 3), np.uint8), source="e")
    dets = [_detections(i, 1) for i in range(1, 5)]
    q = None
    for d in dets:
        q = enc.add(d) or q
    dec = GroupDecoder(wait_s=0.05, horizon_s=2.0)
    for d in dets[:3]:
        dec.data(_features(d), now=0.0)
    assert dec.due(now=5.0) == []                     # the parity never came: nothing to solve with
    dec2 = GroupDecoder(wait_s=0.05, horizon_s=2.0)
    for d in dets[:2]:
        dec2.data(_features(d), now=0.0)
    dec2.parity(_parity_output(q, {d.key: d for d in dets}), now=0.0)
    assert dec2.due(now=1.0) == [] and dec2.pending() == 1   # two missing: the items wait
    assert dec2.due(now=3.0) == [] and dec2.pending() == 0 and dec2.counts.unrecoverable == 1
    # A dropped parity query's tombstone is counted, not decoded.
    dec2.parity(q.tombstone("deadline at reid.parity"), now=3.0)
    assert dec2.counts.dropped_parity == 1


def test_a_tombstone_among_the_others_leaves_two_unknowns():
    a, b, parity = _pair()
    dec = GroupDecoder(wait_s=0.01)
    dec.data(_features(a).tombstone("deadline at reid"), now=0.0)
    dec.parity(parity, now=0.0)
    assert dec.due(now=1.0) == [] and dec.counts.unrecoverable == 1
