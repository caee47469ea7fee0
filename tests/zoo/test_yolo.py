"""YOLOv8 preprocessing and decoding: hand-built outputs come back as known boxes in original pixels."""

from __future__ import annotations

import numpy as np
import pytest

from jellybean.errors import JellyBeanError
from jellybean.zoo.yolo import (
    Transform,
    box_iou,
    decode_yolov8,
    encode_yolov8,
    letterbox_transform,
    nms,
    preprocess,
    resize_transform,
)


def column(cx, cy, w, h, scores):
    return np.array([cx, cy, w, h, *scores], np.float32)


def output(*columns, anchors=8):
    """A [1, 4 + nc, anchors] output whose first anchors are the given columns, the rest zero."""
    cols = np.stack(columns, axis=1)
    out = np.zeros((1, cols.shape[0], anchors), np.float32)
    out[0, :, : cols.shape[1]] = cols
    return out


# a 128 x 96 frame plainly resized to a 64 x 64 input: x halves, y shrinks by 2/3
FRAME_W, FRAME_H = 128, 96
T = resize_transform(FRAME_W, FRAME_H, 64)


def test_known_boxes_come_back_in_original_pixels_and_nms_drops_the_duplicate():
    out = output(
        column(16, 16, 16, 12, [0.9, 0.0]),     # A: input 8,10,24,22 -> original 16,15,48,33
        column(17, 16, 16, 12, [0.7, 0.1]),     # A shifted by 1 px, lower score: suppressed (IoU 0.88)
        column(48, 40, 20, 16, [0.05, 0.8]),    # B, class 1, far away: kept
        column(40, 50, 10, 10, [0.2, 0.1]),     # below conf 0.25: dropped
    )
    (det,) = decode_yolov8(out, conf=0.25, iou=0.6, transforms=[T])
    assert len(det) == 2
    np.testing.assert_allclose(det.boxes, [[16, 15, 48, 33], [76, 48, 116, 72]], atol=1e-4)
    np.testing.assert_allclose(det.scores, [0.9, 0.8], atol=1e-6)
    assert det.classes.tolist() == [0, 1]
    assert det.boxes.dtype == np.float32 and det.scores.dtype == np.float32 and det.classes.dtype == np.int64


def test_without_transforms_boxes_stay_in_input_pixels():
    (det,) = decode_yolov8(output(column(16, 16, 16, 12, [0.9])), conf=0.25)
    np.testing.assert_allclose(det.boxes, [[8, 10, 24, 22]])


def test_nms_is_per_class_unless_class_agnostic():
    out = output(column(20, 20, 10, 10, [0.9, 0.0]), column(20, 20, 10, 10, [0.0, 0.8]))
    (per_class,) = decode_yolov8(out)
    assert per_class.classes.tolist() == [0, 1]
    (agnostic,) = decode_yolov8(out, class_agnostic=True)
    assert agnostic.classes.tolist() == [0] and agnostic.scores.tolist() == pytest.approx([0.9])


def test_conf_max_det_classes_and_multi_label():
    cols = [column(10 + 12 * k, 10, 8, 8, [0.3 + 0.05 * k, 0.28]) for k in range(5)]   # disjoint boxes
    out = output(*cols)
    (det,) = decode_yolov8(out, conf=0.25)
    assert len(det) == 5 and np.all(np.diff(det.scores) <= 0)            # best first
    (det,) = decode_yolov8(out, conf=0.25, max_det=2)
    assert det.scores.tolist() == pytest.approx([0.5, 0.45])
    (det,) = decode_yolov8(out, conf=0.25, classes=[1])                  # best class is 0 everywhere
    assert len(det) == 0
    (det,) = decode_yolov8(out, conf=0.25, multi_label=True)             # every class above conf
    assert len(det) == 10 and sorted(det.classes.tolist()) == [0] * 5 + [1] * 5
    (det,) = decode_yolov8(out, conf=0.25, multi_label=True, classes=[1])
    assert det.classes.tolist() == [1] * 5


def test_batch_and_single_image_shapes():
    out = np.concatenate([output(column(16, 16, 16, 12, [0.9])), np.zeros((1, 5, 8), np.float32)])
    dets = decode_yolov8(out, transforms=T)                               # one transform for all
    assert [len(d) for d in dets] == [1, 0]
    assert dets[1].boxes.shape == (0, 4)
    (det,) = decode_yolov8(out[0])                                        # [4 + nc, A]
    assert len(det) == 1


def test_bad_output_shapes_are_clear_errors():
    with pytest.raises(JellyBeanError, match=r"expected \[N, 4 \+ classes, anchors\]"):
        decode_yolov8(np.zeros((1, 4, 10), np.float32))
    with pytest.raises(JellyBeanError, match="2 images in the output but 1 transforms"):
        decode_yolov8(np.zeros((2, 6, 10), np.float32), transforms=[T])


def test_letterbox_geometry_and_round_trip():
    image = np.zeros((96, 160, 3), np.uint8)
    image[:, :, 0] = 255                                                  # pure blue in BGR
    batch = preprocess([image], (64, 64), letterbox=True)
    (t,) = batch.transforms
    # scale min(64/96, 64/160) = 0.4 -> 64 x 38 (38.4 rounded), centred: 13 rows of padding on top
    assert (t.width, t.height, t.px, t.py) == (160, 96, 0.0, 13.0)
    assert t.sx == pytest.approx(0.4) and t.sy == pytest.approx(38 / 96)
    x = batch.images[0]
    assert x.shape == (3, 64, 64) and x.dtype == np.float32 and batch.images.flags.c_contiguous
    np.testing.assert_allclose(x[:, :13], 114 / 255)                     # padding above
    np.testing.assert_allclose(x[:, 13 + 38:], 114 / 255)                # and below
    np.testing.assert_allclose(x[2, 13:51], 1.0)                          # blue is channel 2 in RGB
    np.testing.assert_allclose(x[0, 13:51], 0.0)
    boxes = np.array([[0, 0, 160, 96], [10.5, 20.25, 70, 50], [150, 80, 160, 96]], np.float32)
    out = encode_yolov8([(boxes, np.array([0.9, 0.8, 0.7]), np.array([0, 0, 0]))], 1, anchors=16, transforms=[t])
    (det,) = decode_yolov8(out, transforms=batch)
    np.testing.assert_allclose(det.boxes, boxes, atol=1e-3)


def test_letterbox_of_a_tall_image_pads_the_sides():
    t = letterbox_transform(50, 100, (64, 64))                            # r = 0.64 -> 32 x 64
    assert (t.px, t.py) == (16.0, 0.0) and t.sx == pytest.approx(32 / 50)
    back = t.to_original(t.to_input(np.array([[5, 10, 45, 90]])))
    np.testing.assert_allclose(back, [[5, 10, 45, 90]], atol=1e-4)


def test_preprocess_resizes_converts_and_batches():
    a = np.zeros((96, 128, 3), np.uint8)
    a[..., 2] = 255                                                       # red in BGR
    b = np.full((50, 70), 128, np.uint8)                                  # grey, another size
    batch = preprocess([a, b], (32, 48))
    assert batch.images.shape == (2, 3, 32, 48) and len(batch) == 2
    np.testing.assert_allclose(batch.images[0, 0], 1.0)                   # red is channel 0 in RGB
    np.testing.assert_allclose(batch.images[0, 1:], 0.0)
    np.testing.assert_allclose(batch.images[1], 128 / 255, atol=1e-6)
    assert batch.transforms[0] == Transform(128, 96, 48 / 128, 32 / 96)
    assert preprocess(a, 32).images.shape == (1, 3, 32, 32)               # one image, square size
    assert preprocess([a], 32, dtype=np.float16).images.dtype == np.float16


def test_to_original_clips_to_the_frame():
    out = output(column(-4, 60, 20, 20, [0.9]))                           # sticks out left and bottom
    (det,) = decode_yolov8(out, transforms=[T])
    assert det.boxes.tolist() == [[0.0, 75.0, 12.0, 96.0]]


def reference_nms(boxes, scores, iou, max_det=None):
    """Textbook greedy NMS, one box at a time."""
    keep = []
    overlap = box_iou(boxes, boxes)
    for i in np.argsort(-scores, kind="stable"):
        if all(overlap[i, j] <= iou for j in keep):
            keep.append(i)
            if max_det is not None and len(keep) == max_det:
                break
    return np.array(keep, np.int64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nms_matches_the_textbook_greedy_across_chunks(seed):
    rng = np.random.default_rng(seed)
    n = 400
    centres = rng.uniform(0, 200, (40, 2))[rng.integers(40, size=n)] + rng.normal(0, 4, (n, 2))
    wh = rng.uniform(10, 40, (n, 2))
    boxes = np.concatenate([centres - wh / 2, centres + wh / 2], axis=1)
    scores = rng.random(n)
    for max_det in (None, 25):
        expected = reference_nms(boxes, scores, 0.5, max_det)
        for chunk in (7, 64, 10_000):
            assert nms(boxes, scores, 0.5, max_det=max_det, chunk=chunk).tolist() == expected.tolist()


def test_nms_edge_cases():
    assert nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [5, 5, 5, 5]], float)   # a duplicate and an empty box
    assert nms(boxes, np.array([0.5, 0.9, 0.7])).tolist() == [1, 2]
    assert nms(boxes, np.array([0.5, 0.9, 0.7]), classes=np.array([0, 1, 0])).tolist() == [1, 2, 0]
    with pytest.raises(JellyBeanError):
        nms(boxes, np.zeros(2))
