"""Detection AP is COCO's: `DetectionAccumulator` runs pycocotools' COCOeval. Checked here against
known cases worked out from COCO's definition, and against a hand-written oracle of that
definition (the evaluator the zoo used before, now with COCO's 101-point interpolation and
100-detection cap) on generated cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jellybean.errors import JellyBeanError
from jellybean.zoo import evaluators as ev

# --- the oracle: COCO's bbox AP, written out by hand ---------------------------------------------

THRESHOLDS = np.linspace(0.5, 0.95, 10)           # as pycocotools' Params.iouThrs
RECALL_POINTS = np.linspace(0.0, 1.0, 101)        # as Params.recThrs
MAX_DET = 100                                     # Params.maxDets[-1]


def iou_matrix(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU [P, G] of x1, y1, x2, y2 boxes; boxes that only touch (or have no area) overlap 0."""
    out = np.zeros((len(pred), len(gt)))
    for i, d in enumerate(pred):
        for j, g in enumerate(gt):
            w = min(d[2], g[2]) - max(d[0], g[0])
            h = min(d[3], g[3]) - max(d[1], g[1])
            if w <= 0 or h <= 0:
                continue
            inter = w * h
            out[i, j] = inter / ((d[2] - d[0]) * (d[3] - d[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter)
    return out


def match_image(pred: np.ndarray, scores: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One image and class: its (at most MAX_DET) best predictions' scores and true-positive
    flags [P, T]. In descending score (ties in input order), each takes the unmatched gt box
    with the highest IoU >= t (of equal IoUs, the later gt box, as COCOeval's loop does)."""
    order = np.argsort(-scores, kind="mergesort")[:MAX_DET]
    pred, scores = pred[order], scores[order]
    iou = iou_matrix(pred, gt)
    tp = np.zeros((len(pred), len(THRESHOLDS)), bool)
    for k, t in enumerate(THRESHOLDS):
        taken = np.zeros(len(gt), bool)
        for i in range(len(pred)):
            best, m = t, -1
            for j in range(len(gt)):
                if not taken[j] and iou[i, j] >= best:
                    best, m = iou[i, j], j
            if m >= 0:
                taken[m] = True
                tp[i, k] = True
    return scores, tp


def coco_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """101-point interpolated AP: precision made monotone from the right, read at the first rank
    reaching each recall point 0, 0.01, ..., 1 (0 where that recall is never reached), averaged."""
    envelope = np.maximum.accumulate(np.asarray(precision, float)[::-1])[::-1]
    at = np.searchsorted(recall, RECALL_POINTS, side="left")
    return float(np.mean([envelope[i] if i < len(envelope) else 0.0 for i in at]))


def all_point_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """The all-point (VOC 2010+) area the zoo reported before: sum over every recall step."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.maximum.accumulate(np.concatenate([[0.0], precision, [0.0]])[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def oracle(images, conf: float = ev.REPORT_CONF, interpolation=coco_ap) -> dict[str, float]:
    """COCO's bbox metrics by hand. images: (pred boxes, scores, classes, gt boxes, gt classes)."""
    classes = sorted({int(c) for im in images for c in im[4]})
    ap, ar, precisions, recalls = {}, [], [], []
    for c in classes:
        scores, hits, npos = [], [], 0
        for pb, ps, pc, gb, gc in images:
            s, tp = match_image(pb[pc == c], ps[pc == c], gb[gc == c])
            scores.append(s)
            hits.append(tp)
            npos += int((gc == c).sum())
        scores = np.concatenate(scores)
        hits = np.concatenate(hits) if scores.size else np.zeros((0, len(THRESHOLDS)), bool)
        order = np.argsort(-scores, kind="mergesort")       # ties: earlier image first
        scores, hits = scores[order], hits[order]
        tpc, fpc = np.cumsum(hits, axis=0), np.cumsum(~hits, axis=0)
        rec = tpc / npos
        prec = tpc / (tpc + fpc + np.spacing(1))
        ap[c] = np.array([interpolation(rec[:, k], prec[:, k]) for k in range(len(THRESHOLDS))])
        ar.append(rec[-1].mean() if len(rec) else 0.0)
        above = scores >= conf
        n_tp = int(hits[above, 0].sum())
        precisions.append(n_tp / int(above.sum()) if above.any() else 0.0)
        recalls.append(n_tp / npos)
    out = {"ap50": np.mean([a[0] for a in ap.values()]), "ap50_95": np.mean([a.mean() for a in ap.values()]),
           "ap75": np.mean([a[5] for a in ap.values()]), "ar100": np.mean(ar),
           "precision": np.mean(precisions), "recall": np.mean(recalls)}
    if len(ap) > 1:
        out.update({f"ap50_c{c}": a[0] for c, a in ap.items()})
    return {k: float(v) for k, v in out.items()}


def coco(images, conf: float = ev.REPORT_CONF) -> dict[str, float]:
    acc = ev.DetectionAccumulator()
    for pb, ps, pc, gb, gc in images:
        acc.add(pb, ps, pc, gb, gc)
    return acc.compute(conf)


def image(preds=(), gts=(), pred_classes=None, gt_classes=None):
    """preds: (x1, y1, x2, y2, score); gts: (x1, y1, x2, y2); classes 0 unless given."""
    p = np.array(preds, float).reshape(-1, 5)
    g = np.array(gts, float).reshape(-1, 4)
    pc = np.zeros(len(p), np.int64) if pred_classes is None else np.array(pred_classes, np.int64)
    gc = np.zeros(len(g), np.int64) if gt_classes is None else np.array(gt_classes, np.int64)
    return p[:, :4], p[:, 4], pc, g, gc


A, B = (0, 0, 10, 10), (20, 20, 30, 30)
METRICS = ("ap50", "ap50_95", "ap75", "ar100", "precision", "recall")


def agree(images, tol: float = 1e-9) -> dict[str, float]:
    got, want = coco(images), oracle(images)
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=tol), k
    return got


# --- known cases, from COCO's definition ---------------------------------------------------------


def test_a_perfect_detector_scores_one():
    m = agree([image([(*A, 0.9)], [A]), image([(*B, 0.8)], [B])])
    assert all(m[k] == pytest.approx(1.0) for k in METRICS)       # COCO divides by tp + fp + eps
    assert m["images"] == 2 and m["gt_boxes"] == 2 and m["detections"] == 2


@pytest.mark.parametrize(("height", "hits"), [(6.0, 3), (6.3, 3), (6.6, 4), (9.6, 10), (4.0, 0)])
def test_one_box_counts_the_thresholds_its_iou_reaches(height, hits):
    # a box of IoU height/10 with the gt: a true positive at every t <= IoU, nothing otherwise
    m = agree([image([(0, 0, 10, height, 0.9)], [A])])
    assert m["ap50_95"] == pytest.approx(hits / 10)
    assert m["ap50"] == pytest.approx(1.0 if hits else 0.0)


def test_iou_0_6_is_a_hit_at_0_6_so_coco_ap_is_0_3():
    # COCOeval compares IoU >= t: IoU exactly 0.6 counts at t = 0.50, 0.55, 0.60 -> 3 of 10
    m = coco([image([(0, 0, 10, 6, 0.9)], [A])])
    assert (m["ap50"], m["ap50_95"], m["ap75"]) == (pytest.approx(1.0), pytest.approx(0.3), 0.0)


def test_half_the_recall_is_51_of_101_recall_points():
    # precision 1 up to recall 0.5: recall points 0, 0.01, ..., 0.50 -> 51/101, not the area 0.5
    m = agree([image([(*A, 0.9)], [A]), image([], [B])])
    assert m["ap50"] == pytest.approx(51 / 101) and m["recall"] == 0.5 and m["precision"] == 1.0


def test_a_false_positive_above_the_only_true_positive_halves_precision_everywhere():
    m = agree([image([(*B, 0.9), (*A, 0.8)], [A])])
    assert m["ap50"] == pytest.approx(0.5)
    # a false positive below every true positive costs nothing
    assert agree([image([(*A, 0.9), (*B, 0.8)], [A])])["ap50"] == pytest.approx(1.0)


def test_a_duplicate_is_a_false_positive_and_classes_must_match():
    assert agree([image([(*A, 0.9), (*A, 0.8)], [A])])["precision"] == pytest.approx(0.5)
    m = agree([image([(*A, 0.9), (*B, 0.8)], [A, B], pred_classes=[0, 0], gt_classes=[0, 1])])
    assert m["ap50_c0"] == pytest.approx(1.0) and m["ap50_c1"] == 0.0 and m["ap50"] == pytest.approx(0.5)


def test_coco_keeps_the_100_best_detections_of_an_image():
    gts = [(x, 0, x + 8, 8) for x in range(0, 1500, 10)]                       # 150 boxes
    preds = [(*g, 0.9 - i / 1000) for i, g in enumerate(gts)]                  # all of them, exactly
    m = agree([image(preds, gts)])
    assert m["ar100"] == pytest.approx(100 / 150) and m["recall"] == pytest.approx(100 / 150)


def test_no_detections_score_zero():
    m = agree([image([], [A]), image([], [B])])
    assert all(m[k] == 0.0 for k in METRICS) and m["detections"] == 0


def test_detections_in_frames_without_gt_are_false_positives():
    m = agree([image([(*B, 0.9)], []), image([(*A, 0.8)], [A])])
    assert m["ap50"] == pytest.approx(0.5) and m["images"] == 2


def test_no_ground_truth_is_an_error():
    acc = ev.DetectionAccumulator()
    acc.add(np.array([A], float), [0.9], [0], np.zeros((0, 4)))
    with pytest.raises(JellyBeanError, match="none of the 1 image.* has a ground-truth box; AP is undefined"):
        acc.compute()


@pytest.mark.parametrize(("preds", "scores", "message"), [
    ([(0, 0, np.nan, 10)], [0.9], r"image #0: predictions: 1 box\(es\) with a non-finite coordinate"),
    ([(0, 0, np.inf, 10)], [0.9], "non-finite coordinate"),
    ([(10, 0, 0, 10)], [0.9], r"x2 < x1 or y2 < y1"),
    ([A], [np.nan], r"1 non-finite score"),
    ([A, B], [0.9], "1 scores for 2 boxes"),
    ([(0, 0, 10)], [0.9], r"expected \[K, 4\]"),
])
def test_bad_predictions_are_errors(preds, scores, message):
    acc = ev.DetectionAccumulator()
    with pytest.raises(JellyBeanError, match=message):
        acc.add(np.array(preds, float), np.array(scores, float), np.zeros(len(preds), int), np.array([A], float))
    assert acc.images == 0


def test_bad_ground_truth_is_an_error():
    with pytest.raises(JellyBeanError, match="ground truth: 1 box"):
        ev.DetectionAccumulator().add(np.zeros((0, 4)), [], [], np.array([(0, 0, np.nan, 1)]))


def test_the_coco_api_prints_nothing(capsys):
    coco([image([(*A, 0.9)], [A])])
    coco([image([], [A])])
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


# --- generated cases: COCOeval against the oracle --------------------------------------------------

# Coordinates on a half-pixel grid, so that both sides compute every IoU exactly: agreement is then
# exact (including IoUs right at a threshold), and any difference is one of definition.
half = st.integers(0, 120).map(lambda v: v / 2)
size = st.integers(1, 40).map(lambda v: v / 2)
box = st.tuples(half, half, size, size).map(lambda b: (b[0], b[1], b[0] + b[2], b[1] + b[3]))
score = st.one_of(st.sampled_from([0.1, 0.25, 0.5, 0.9]), st.floats(0.0, 1.0))


@st.composite
def frame(draw, classes: int):
    gts = draw(st.lists(box, max_size=6))
    gt_cls = draw(st.lists(st.integers(0, classes - 1), min_size=len(gts), max_size=len(gts)))
    preds, pred_cls = [], []
    for g, c in zip(gts, gt_cls):                  # perturbed copies of the gt, some dropped
        for _ in range(draw(st.integers(0, 2))):
            dx, dy, dw, dh = (draw(st.integers(-4, 4)) / 2 for _ in range(4))
            x1, y1 = g[0] + dx, g[1] + dy
            preds.append((x1, y1, max(x1, g[2] + dx + dw), max(y1, g[3] + dy + dh), draw(score)))
            pred_cls.append(c if draw(st.booleans()) or classes == 1 else draw(st.integers(0, classes - 1)))
    for b in draw(st.lists(box, max_size=3)):      # and some false positives
        preds.append((*b, draw(score)))
        pred_cls.append(draw(st.integers(0, classes - 1)))
    return image(preds, gts, pred_cls, gt_cls)


# derandomized without a database, as the other property tests: every run sees the same cases
PROPERTY = dict(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])


def frames(classes: int):
    return st.lists(frame(classes), min_size=1, max_size=5).filter(lambda ims: any(len(im[3]) for im in ims))


@settings(max_examples=300, **PROPERTY)
@given(frames(1))
def test_cocoeval_agrees_with_the_oracle_one_class(images):
    agree(images)


@settings(max_examples=150, **PROPERTY)
@given(frames(3))
def test_cocoeval_agrees_with_the_oracle_several_classes(images):
    agree(images)


@settings(max_examples=200, **PROPERTY)
@given(frames(1))
def test_the_old_all_point_ap_is_within_2_of_101_of_coco(images):
    # what changed in the zoo's figures by the interpolation alone: the mean of a non-increasing
    # precision at 101 recall points and its area differ by at most 2/101 (Riemann sums)
    old, new = oracle(images, interpolation=all_point_ap), coco(images)
    for k in ("ap50", "ap50_95"):
        assert abs(old[k] - new[k]) <= 2 / 101 + 1e-9, k
