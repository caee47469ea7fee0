"""The synthetic scene writer: determinism, boxes on drawn vehicles, global ids, the layout's files."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from jellybean.errors import JellyBeanError
from jellybean.replay.scene import (
    ROAD_HALF,
    SceneConfig,
    build_scene,
    write_scene,
)

CONFIG = SceneConfig(cameras=3, seconds=3, seed=7, width=160, height=96)


def decode(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    return frames


def read_gt(path: Path) -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in line.split(",")) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The same seed written twice into different directories, and another seed once."""
    roots = {name: tmp_path_factory.mktemp(name) for name in ("a", "b", "other")}
    summaries = {
        "a": write_scene(roots["a"], CONFIG),
        "b": write_scene(roots["b"], CONFIG),
        "other": write_scene(roots["other"], SceneConfig(cameras=3, seconds=3, seed=8, width=160, height=96)),
    }
    return roots, summaries


def cam_dirs(root: Path) -> list[Path]:
    return sorted((root / "train" / "S01").iterdir())


def test_layout_files(written):
    roots, summaries = written
    root = roots["a"]
    assert [d.name for d in cam_dirs(root)] == ["c001", "c002", "c003"]
    for d in cam_dirs(root):
        for name in ("vdo.avi", "roi.jpg", "calibration.txt", "gt/gt.txt"):
            assert (d / name).is_file(), d / name
        roi = cv2.imread(str(d / "roi.jpg"), cv2.IMREAD_GRAYSCALE)
        assert roi.shape == (96, 160)
        road = (roi > 127).mean()
        assert 0.3 < road < 0.95          # road in the middle, sidewalks and lawns around it
        line = (d / "calibration.txt").read_text()
        assert line.startswith("Homography matrix: ") and line.count(";") == 2
    stamps = (root / "cam_timestamp" / "S01.txt").read_text().split("\n")
    offsets = {ln.split()[0]: float(ln.split()[1]) for ln in stamps if ln}
    assert set(offsets) == {"c001", "c002", "c003"}
    assert min(offsets.values()) == 0 and all(0 <= v <= 2 for v in offsets.values())
    assert len(set(offsets.values())) == 3
    counts = dict(ln.split() for ln in (root / "cam_framenum" / "S01.txt").read_text().splitlines())
    assert counts == {"c001": "30", "c002": "30", "c003": "30"}
    assert summaries["a"].gt_boxes == sum(len(read_gt(d / "gt" / "gt.txt")) for d in cam_dirs(root))


def frame_hashes(root: Path) -> list[str]:
    out = []
    for d in cam_dirs(root):
        frames = decode(d / "vdo.avi")
        out += [hashlib.sha256(frames[k].tobytes()).hexdigest() for k in (0, 14, len(frames) - 1)]
    return out


def test_same_seed_same_gt_and_frames(written):
    roots, _ = written
    for da, db in zip(cam_dirs(roots["a"]), cam_dirs(roots["b"])):
        assert (da / "gt" / "gt.txt").read_bytes() == (db / "gt" / "gt.txt").read_bytes()
    assert frame_hashes(roots["a"]) == frame_hashes(roots["b"])


def test_other_seed_differs(written):
    roots, _ = written
    a = [(d / "gt" / "gt.txt").read_bytes() for d in cam_dirs(roots["a"])]
    other = [(d / "gt" / "gt.txt").read_bytes() for d in cam_dirs(roots["other"])]
    assert a != other
    assert frame_hashes(roots["a"]) != frame_hashes(roots["other"])


def test_gt_boxes_in_frame_and_on_drawn_vehicles(written):
    roots, _ = written
    scene = build_scene(CONFIG)
    checked = 0
    for cam, d in enumerate(cam_dirs(roots["a"])):
        frames = decode(d / "vdo.avi")
        background = scene.background(cam).astype(np.int16)
        rows = read_gt(d / "gt" / "gt.txt")
        assert rows, d
        for frame, _id, left, top, width, height, *rest in rows:
            assert rest == [1, -1, -1, -1]
            assert 0 <= left and 0 <= top and width > 0 and height > 0
            assert left + width <= 160 and top + height <= 96
            assert min(width, height) >= CONFIG.min_box_side
            crop = frames[frame - 1][top:top + height, left:left + width].astype(np.int16)
            diff = np.abs(crop - background[top:top + height, left:left + width]).mean()
            assert diff > 12, (d.name, frame, _id, diff)
            checked += 1
        # and where there is no vehicle the frame is the background plus mild noise
        empty = np.ones((96, 160), bool)
        for frame, _id, left, top, width, height, *_ in rows:
            if frame == 1:
                empty[max(0, top - 8):top + height + 8, max(0, left - 8):left + width + 8] = False
        drawn = [p.box for p in scene._placed[cam][0]]
        for x0, y0, x1, y1 in drawn:
            empty[max(0, y0 - 4):max(0, y1 + 4), max(0, x0 - 4):max(0, x1 + 4)] = False
        if empty.sum() > 500:
            assert np.abs(frames[0].astype(np.int16) - background)[empty].mean() < 8
    assert checked > 300


def test_ids_are_global_across_cameras(written):
    roots, summaries = written
    cams_of = defaultdict(set)
    for d in cam_dirs(roots["a"]):
        for row in read_gt(d / "gt" / "gt.txt"):
            cams_of[row[1]].add(d.name)
    assert sorted(cams_of) == list(range(1, len(cams_of) + 1))      # ids 1..K
    assert summaries["a"].vehicles == len(cams_of)
    assert sum(len(c) >= 2 for c in cams_of.values()) >= 2


def test_frames_one_based_and_within_framenum(written):
    roots, _ = written
    counts = dict(ln.split() for ln in (roots["a"] / "cam_framenum" / "S01.txt").read_text().splitlines())
    for d in cam_dirs(roots["a"]):
        frames = [row[0] for row in read_gt(d / "gt" / "gt.txt")]
        assert min(frames) >= 1 and max(frames) <= int(counts[d.name])
        assert len(decode(d / "vdo.avi")) == int(counts[d.name])
        assert frames == sorted(frames)


def test_occluded_boxes_are_kept_and_hidden_ones_dropped():
    scene = build_scene(CONFIG)
    overlapping = dropped = 0
    for cam in range(CONFIG.cameras):
        for placed in scene._placed[cam]:
            kept = [p.box for p in placed if p.gt]
            dropped += sum(not p.gt for p in placed)
            for i, a in enumerate(kept):
                for b in kept[i + 1:]:
                    if min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1]):
                        overlapping += 1
    assert overlapping > 0       # a vehicle partly behind another keeps its whole box
    assert dropped > 0           # mostly hidden or too small: not in gt


def test_homography_matches_where_vehicles_are_drawn(written):
    """H^-1 of a gt box's bottom centre lands on the road, as in AI City's calibrated tracking."""
    roots, _ = written
    for d in cam_dirs(roots["a"]):
        line = (d / "calibration.txt").read_text().split(":", 1)[1]
        h = np.array([[float(v) for v in row.split()] for row in line.split(";")])
        inv = np.linalg.inv(h)
        for frame, _id, left, top, width, height, *_ in read_gt(d / "gt" / "gt.txt"):
            if top + height >= 95 or left == 0 or left + width >= 160:
                continue        # clipped by the frame: the bottom edge is not the vehicle's
            p = inv @ np.array([left + width / 2, top + height, 1.0])
            assert abs(p[1] / p[2]) < ROAD_HALF + 1.0


def test_slow_camera_runs_at_8_fps(tmp_path):
    summary = write_scene(tmp_path, SceneConfig(cameras=2, seconds=1, seed=1, width=96, height=64, slow_camera=2))
    assert [(c.fps, c.frames) for c in summary.cameras] == [(10.0, 10), (8.0, 8)]
    cap = cv2.VideoCapture(str(tmp_path / "train" / "S01" / "c002" / "vdo.avi"))
    assert cap.get(cv2.CAP_PROP_FPS) == 8.0
    cap.release()


def test_some_vehicles_stop_at_lights():
    scene = build_scene(SceneConfig(cameras=2, seconds=2, seed=3, width=96, height=64))
    assert scene.stopped_at_lights() > 0
    kinds = {tr.vehicle.kind for tr in scene.tracks}
    assert {"car", "van"} <= kinds and len({tr.vehicle.colour for tr in scene.tracks}) > 5


@pytest.mark.parametrize("kwargs, message", [
    ({"cameras": 0}, "--cameras: must be at least 1 (got 0)"),
    ({"seconds": 0}, "--seconds: must be a number greater than 0 (got 0)"),
    ({"seconds": -1.5}, "--seconds: must be a number greater than 0 (got -1.5)"),
    ({"split": "dev"}, "--split: unknown split 'dev'; use one of: train, validation, test"),
    ({"scenario": "X1"}, "--scenario: expected a name like S01 (got 'X1')"),
    ({"slow_camera": 5}, "--slow-camera: must be a camera number from 1 to 4 (got 5)"),
    ({"width": 10}, "--width: must be between 64 and 4096 pixels (got 10)"),
])
def test_bad_config(kwargs, message, tmp_path):
    with pytest.raises(JellyBeanError) as exc:
        write_scene(tmp_path, SceneConfig(**kwargs))
    assert str(exc.value) == message
    assert not any(tmp_path.iterdir())    # nothing written


def test_existing_scenario_needs_overwrite(tmp_path):
    small = SceneConfig(cameras=1, seconds=0.5, seed=1, width=96, height=64)
    write_scene(tmp_path, small)
    with pytest.raises(JellyBeanError, match="already exists and is not empty; pass --overwrite"):
        write_scene(tmp_path, small)
    write_scene(tmp_path, SceneConfig(cameras=1, seconds=0.5, seed=2, width=96, height=64, overwrite=True))
    # another scenario beside it is fine
    write_scene(tmp_path, SceneConfig(cameras=1, seconds=0.5, seed=1, width=96, height=64, scenario="S02",
                                      first_camera=6))
    assert (tmp_path / "train" / "S02" / "c006" / "vdo.avi").is_file()
    assert (tmp_path / "cam_timestamp" / "S02.txt").read_text() == "c006 0\n"
