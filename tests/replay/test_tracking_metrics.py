"""AI City track-1 scoring of a synthetic scene: the challenge's rules, per-camera figures, the
submission file, and cameras whose gt cannot be used."""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jellybean.errors import JellyBeanError, SpecError
from jellybean.replay.cityflow import open_dataset
from jellybean.replay.scene import SceneConfig, write_scene
from jellybean.replay.tracking_metrics import (
    Prediction,
    camera_number,
    evaluate_mtmc,
    read_submission,
    write_submission,
)

CONFIG = SceneConfig(cameras=3, seconds=3, seed=7, width=160, height=96)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scene")
    write_scene(root, CONFIG)
    return root


@pytest.fixture(scope="module")
def scenario(root):
    return open_dataset(root, strict=True).scenario("S01")


def perfect(scenario) -> list[Prediction]:
    """The gt itself, as the sink would deliver it."""
    return [Prediction(f"S01/{c.name}", r.frame, r.id, r.left, r.top, r.width, r.height)
            for c in scenario.cameras for r in c.gt()]


def cameras_of(scenario) -> dict[int, set[str]]:
    out: dict[int, set[str]] = defaultdict(set)
    for c in scenario.cameras:
        for r in c.gt():
            out[r.id].add(c.name)
    return out


def test_perfect_predictions_score_what_the_single_camera_rule_allows(scenario):
    """The synthetic gt keeps vehicles seen by one camera only (the real AI City gt holds only vehicles
    seen by two or more). The challenge removes every predicted identity seen in one camera, so even a
    perfect prediction loses those boxes: IDP = 1 (nothing wrong is predicted), IDR = the share of gt
    boxes whose identity is seen by two cameras or more, IDF1 = 2·IDR / (1 + IDR) < 1. Scored against a
    gt restricted the same way (as AI City's), perfect is IDF1 = IDP = IDR = 1."""
    preds = perfect(scenario)
    cams = cameras_of(scenario)
    single = sum(1 for p in preds if len(cams[p.id]) == 1)
    assert 0 < single < len(preds)                      # the scene has both kinds of vehicles
    m = evaluate_mtmc(scenario, preds)
    idr = (len(preds) - single) / len(preds)
    assert m.idp == 1.0
    assert m.idr == pytest.approx(idr)
    assert m.idf1 == pytest.approx(2 * idr / (1 + idr)) and m.idf1 < 1
    assert m.predictions_removed["single_camera"] == single
    assert m.idtp == len(preds) - single and m.idfn == single and m.idfp == 0
    assert m.cameras_evaluated == ["S01/c001", "S01/c002", "S01/c003"] and m.cameras_skipped == {}
    for key, cam in m.per_camera.items():               # each camera alone: no filter, all perfect
        assert (cam.mota, cam.idf1, cam.ids, cam.precision, cam.recall) == (1.0, 1.0, 0, 1.0, 1.0), key
        assert cam.frames == 30 and cam.gt_boxes == cam.predicted_boxes > 0

    strict = evaluate_mtmc(scenario, preds, gt_multi_camera_only=True)
    assert (strict.idf1, strict.idp, strict.idr) == (1.0, 1.0, 1.0)


def test_cameras_are_concatenated_past_each_others_last_frame(scenario):
    """eval.py shifts camera k by the sum over earlier cameras of max(last gt frame, last predicted frame)."""
    preds = perfect(scenario)
    late = Prediction("S01/c001", 40, 999, 0, 0, 5, 5)      # beyond c001's 30 frames, id also in c002
    also = Prediction("S01/c002", 1, 999, 0, 0, 5, 5)
    m = evaluate_mtmc(scenario, preds + [late, also])
    last_gt = {c.name: max(r.frame for r in c.gt()) for c in scenario.cameras}
    assert m.frame_offsets == {"S01/c001": 0, "S01/c002": 40, "S01/c003": 40 + last_gt["c002"]}


def test_swapping_ids_on_half_the_boxes_lowers_idf1(scenario):
    preds = perfect(scenario)
    ids = sorted({p.id for p in preds})
    shift = {a: b for a, b in zip(ids, ids[1:] + ids[:1])}
    swapped = [Prediction(p.camera, p.frame, shift[p.id] if i % 2 else p.id, p.left, p.top, p.width, p.height)
               for i, p in enumerate(preds)]
    good = evaluate_mtmc(scenario, preds, gt_multi_camera_only=True)
    bad = evaluate_mtmc(scenario, swapped, gt_multi_camera_only=True)
    assert good.idf1 == 1.0
    assert bad.idf1 < 0.8 and bad.idp < 1 and bad.idr < 1
    assert sum(c.ids for c in bad.per_camera.values()) > 0
    assert all(c.idf1 < 1 for c in bad.per_camera.values())


def test_identities_seen_in_one_camera_are_removed_from_the_prediction(scenario):
    """Ten false boxes under one identity in c001 cost nothing (removed by the rule); the same boxes
    with that identity seen once more in c002 stay and lower IDP."""
    cams = cameras_of(scenario)
    preds = [p for p in perfect(scenario) if len(cams[p.id]) > 1]
    ghost = [Prediction("S01/c001", k, 5000, 150, 0, 8, 8) for k in range(1, 11)]   # where no gt box is
    base = evaluate_mtmc(scenario, preds, gt_multi_camera_only=True)
    one_camera = evaluate_mtmc(scenario, preds + ghost, gt_multi_camera_only=True)
    two_cameras = evaluate_mtmc(scenario, preds + ghost + [Prediction("S01/c002", 1, 5000, 150, 0, 8, 8)],
                                gt_multi_camera_only=True)
    assert base.idp == one_camera.idp == 1.0
    assert one_camera.predictions_removed["single_camera"] == 10
    assert two_cameras.predictions_removed["single_camera"] == 0
    assert two_cameras.idp == pytest.approx(len(preds) / (len(preds) + 11))
    assert two_cameras.idr == 1.0
    # per camera there is no such rule: the ghost boxes are false positives of c001
    assert one_camera.per_camera["S01/c001"].precision < 1


def test_a_camera_without_predictions_has_the_lower_mota(scenario):
    preds = [p for p in perfect(scenario) if not p.camera.endswith("c002")]
    m = evaluate_mtmc(scenario, preds)
    assert m.per_camera["S01/c002"].mota == 0.0 and m.per_camera["S01/c002"].recall == 0.0
    assert m.per_camera["S01/c001"].mota == m.per_camera["S01/c003"].mota == 1.0


def test_empty_predictions_score_zero(scenario):
    m = evaluate_mtmc(scenario, [])
    assert (m.idf1, m.idp, m.idr) == (0.0, 0.0, 0.0)
    assert m.gt_boxes > 0 and m.predicted_boxes == 0
    assert all(c.mota == 0.0 and c.precision == 0.0 for c in m.per_camera.values())


def test_matches_the_official_evaluator(scenario, monkeypatch):
    """The same numbers as the challenge's eval.py path: pandas frames, single-camera filter, camera
    concatenation and motmetrics.utils.compare_to_groundtruth (whose iou_matrix needs np.asfarray,
    gone in NumPy 2, so it is put back for this comparison only)."""
    import motmetrics as mm

    monkeypatch.setattr(np, "asfarray", lambda a: np.asarray(a, float), raising=False)
    rng = np.random.default_rng(3)
    preds = []
    for p in perfect(scenario):
        if rng.random() < 0.1:
            continue
        ident = p.id if rng.random() < 0.7 else p.id + 1
        preds.append(Prediction(p.camera, p.frame, ident, p.left + rng.uniform(-3, 3), p.top, p.width, p.height))
    ours = evaluate_mtmc(scenario, preds)

    cols = ["CameraId", "Id", "FrameId", "X", "Y", "Width", "Height"]
    gts = pd.DataFrame([(int(c.name[1:]), r.id, r.frame, r.left, r.top, r.width, r.height)
                        for c in scenario.cameras for r in c.gt()], columns=cols)
    ts = pd.DataFrame([(camera_number(p.camera), p.id, p.frame, p.left, p.top, p.width, p.height) for p in preds],
                      columns=cols)
    n_cams = ts[["CameraId", "Id"]].drop_duplicates().groupby("Id").size()
    ts = ts[ts["Id"].isin(n_cams[n_cams > 1].index)].drop_duplicates(["CameraId", "Id", "FrameId"])
    gtds, tsds, shift = [], [], 0
    for k in sorted(gts["CameraId"].unique()):
        g = gts[gts["CameraId"] == k][cols[1:]].copy()
        t = ts[ts["CameraId"] == k][cols[1:]].copy()
        last = max(g["FrameId"].max(), t["FrameId"].max())
        g["FrameId"] += shift
        t["FrameId"] += shift
        gtds.append(g.set_index(["FrameId", "Id"]))
        tsds.append(t.set_index(["FrameId", "Id"]))
        shift += last
    acc = mm.utils.compare_to_groundtruth(pd.concat(gtds), pd.concat(tsds), "iou", distth=0.5)
    official = mm.metrics.create().compute(acc, metrics=["idf1", "idp", "idr"], name="MultiCam")
    assert ours.idf1 == pytest.approx(official["idf1"].iloc[0])
    assert ours.idp == pytest.approx(official["idp"].iloc[0])
    assert ours.idr == pytest.approx(official["idr"].iloc[0])
    assert 0.3 < ours.idf1 < 0.9


def test_a_truncated_gt_file_skips_that_camera(root, tmp_path):
    data = Path(shutil.copytree(root, tmp_path / "data"))
    gt = data / "train" / "S01" / "c003" / "gt" / "gt.txt"
    text = gt.read_text()
    gt.write_text(text[: len(text) // 2 - 3])          # cut off mid-line, as a copy interrupted
    (data / "train" / "S01" / "c002" / "gt" / "gt.txt").unlink()
    scenario = open_dataset(data).scenario("S01")
    good = open_dataset(root).scenario("S01")
    m = evaluate_mtmc(scenario, perfect(good))
    assert m.cameras_evaluated == ["S01/c001"]
    assert str(gt) in m.cameras_skipped["S01/c003"] and "line" in m.cameras_skipped["S01/c003"]
    assert m.cameras_skipped["S01/c003"].startswith("ground truth unusable")
    assert m.cameras_skipped["S01/c002"].startswith("no ground truth")
    assert set(m.per_camera) == {"S01/c001"}
    assert m.predictions_removed["skipped_camera"] > 0
    assert m.idp == 1.0 and m.gt_boxes == len(good.camera("c001").gt())


def test_camera_selection_and_unknown_cameras(scenario):
    preds = perfect(scenario) + [Prediction("S02/c001", 1, 1, 0, 0, 5, 5), Prediction("c009", 1, 1, 0, 0, 5, 5)]
    m = evaluate_mtmc(scenario, preds, cameras=["c001", "S01/c002"])
    assert m.cameras_evaluated == ["S01/c001", "S01/c002"]
    assert "not replayed" in m.cameras_skipped["S01/c003"]
    assert m.predictions_removed["unknown_camera"] == 2
    with pytest.raises(JellyBeanError, match="'c042' is not a camera of train/S01"):
        evaluate_mtmc(scenario, preds, cameras=["c042"])


# --- submission file ------------------------------------------------------------------------------


def test_submission_round_trip_with_camera_ids_and_world_points(scenario, tmp_path):
    preds = perfect(scenario)
    path = write_submission(tmp_path / "track1.txt", preds, scenario=scenario)
    lines = path.read_text().splitlines()
    assert len(lines) == len(preds)
    assert {ln.split()[0] for ln in lines} == {"1", "2", "3"}
    back = read_submission(path, scenario=scenario)
    key = lambda p: (p.camera, p.frame, p.id)  # noqa: E731
    assert sorted(back, key=key) == sorted(preds, key=key)
    assert read_submission(path)[0].camera == "c001"
    # the world columns are the bottom centre through H^-1: H maps them back onto it
    homs = {c.name: c.homography() for c in scenario.cameras}
    for line in lines[:: max(1, len(lines) // 25)]:
        cam, _, _, x, y, w, h, xw, yw = (float(v) for v in line.split())
        u, v, s = homs[f"c{int(cam):03d}"] @ np.array([xw, yw, 1.0])
        assert (u / s, v / s) == pytest.approx((x + w / 2, y + h), abs=1e-4)
        assert abs(yw) < 20                          # on or beside the road, metres from its axis


def test_submission_without_calibration_writes_minus_one(scenario, tmp_path):
    preds = perfect(scenario)[:5]
    for kwargs in ({}, {"scenario": scenario, "homographies": False}):
        path = write_submission(tmp_path / "s.txt", preds, **kwargs)
        assert all(ln.split()[7:] == ["-1", "-1"] for ln in path.read_text().splitlines())


def test_malformed_submission_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("1 7 3 10 20 30 40 -1 -1\n\n1 7 x 10 20 30 40 -1 -1\n2 8 4 10 20\n")
    with pytest.raises(SpecError) as exc:
        read_submission(path)
    assert exc.value.problems == [
        f"{path}: line 3: expected numbers (camera_id obj_id frame_id xmin ymin width height xworld yworld) "
        f"with integer camera, object and frame ids, got '1 7 x 10 20 30 40 -1 -1'",
        f"{path}: line 4: expected 9 fields (camera_id obj_id frame_id xmin ymin width height xworld yworld), "
        f"got 5: '2 8 4 10 20'",
    ]
    with pytest.raises(SpecError, match="cannot be read"):
        read_submission(tmp_path / "missing.txt")
