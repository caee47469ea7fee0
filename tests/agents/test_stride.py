"""A strided detector looks at every stride-th frame; the tracker neither ages nor moves tracks on
the frames it skipped, and the flag travels through every stage."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from jellybean.agents.items import Item
from jellybean.agents.operators.base import OperatorConfig, create

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "model_zoo" / "aicity"


def _frame(k: int) -> Item:
    image = np.full((360, 640, 3), 90, np.uint8)
    if k >= 3:   # the vehicle enters after the first frame, so its track must earn confirmation
        cv2.rectangle(image, (100 + 6 * k, 150), (180 + 6 * k, 200), (30, 30, 200), -1)
    ok, jpeg = cv2.imencode(".jpg", image)
    return Item("cam", k, time.time(), blobs=[jpeg.tobytes()])


def test_stride_two_skips_every_other_frame_and_the_flag_reaches_the_tracker():
    det = create("yolov8-detector", OperatorConfig("detect", "s2", model=MODELS / "detector_w050.onnx",
                                                   threads=1, params={"stride": 2}))
    reid = create("reid-embedder", OperatorConfig("reid", "r", model=MODELS / "reid_w050.onnx", threads=1))
    track = create("sort-tracker", OperatorConfig("track", "sort", params={"min_hits": 2}))
    outs = []
    for k in range(1, 9):
        d = det.process([_frame(k)])[0]
        outs.append((d, track.process(reid.process([d]))[0]))
    for k, (d, t) in enumerate(outs, start=1):
        assert bool(d.meta.get("skipped")) == (k % 2 == 0)
        assert bool(t.meta.get("skipped")) == (k % 2 == 0)
        if k % 2 == 0:
            assert d.meta["boxes"] == [] and d.blobs == [] and t.meta["ids"] == []
    # The looked-at frames 3, 5, 7 are consecutive hits for the tracker: confirmed from frame 5 on,
    # one id. Had the skipped frames counted as misses, the streak would restart and never reach 2.
    ids = {k: t.meta["ids"] for k, (d, t) in enumerate(outs, start=1) if not d.meta.get("skipped")}
    assert ids[1] == [] and ids[3] == []
    assert len(ids[5]) == 1 and ids[5] == ids[7]
