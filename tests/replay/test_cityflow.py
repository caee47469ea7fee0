"""The CityFlow-layout reader: reads back what the writer wrote; collects problems per camera."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from jellybean.errors import SpecError
from jellybean.replay.cityflow import GtRow, open_dataset
from jellybean.replay.scene import SceneConfig, build_scene, write_scene

CONFIG = SceneConfig(cameras=3, seconds=2, seed=11, width=128, height=80, slow_camera=3)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("scene")
    summary = write_scene(root, CONFIG)
    return root, summary


@pytest.fixture
def copy(written, tmp_path) -> Path:
    """A private copy of the written dataset, to break."""
    root, _ = written
    return Path(shutil.copytree(root, tmp_path / "data"))


def test_reads_back_what_was_written(written):
    root, summary = written
    ds = open_dataset(root, strict=True)
    assert ds.splits == ["train"] and ds.problems == []
    sc = ds.scenario("S01")
    assert [c.name for c in sc.cameras] == ["c001", "c002", "c003"]
    scene = build_scene(CONFIG)
    for cam, written_cam in zip(sc.cameras, summary.cameras):
        assert cam.playable and cam.problem is None and cam.has_gt
        assert cam.fps == written_cam.fps
        assert cam.frame_count == written_cam.frames
        assert cam.offset_s == pytest.approx(written_cam.offset_s, abs=1e-9)
        rows = cam.gt()
        assert all(isinstance(r, GtRow) for r in rows)
        assert [(r.frame, r.id, r.left, r.top, r.width, r.height) for r in rows] == scene.gt_rows(
            int(cam.name[1:]) - 1)
        assert len(rows) == written_cam.gt_boxes
        assert cam.timestamp(1) == cam.offset_s and cam.timestamp(3) == pytest.approx(cam.offset_s + 2 / cam.fps)
        assert cam.roi().shape == (80, 128)
        assert np.allclose(cam.homography(), scene.cameras[int(cam.name[1:]) - 1].homography, rtol=1e-8)
    assert [c.fps for c in sc.cameras] == [10.0, 10.0, 8.0]


def test_frames_are_numbered_from_one(written):
    root, _ = written
    cam = open_dataset(root).scenario("S01").camera("c002")
    frames = list(cam.frames())
    assert [k for k, _ in frames] == list(range(1, cam.frame_count + 1))
    assert frames[0][1].shape == (80, 128, 3)
    part = list(cam.frames(start=5, stop=7))
    assert [k for k, _ in part] == [5, 6, 7]
    for (k, image), (k2, image2) in zip(part, frames[4:7]):
        assert k == k2 and np.array_equal(image, image2)


def test_truncated_gt_line_names_file_and_line(copy):
    gt = copy / "train" / "S01" / "c002" / "gt" / "gt.txt"
    lines = gt.read_text().splitlines()
    lines[2] = ",".join(lines[2].split(",")[:4])          # truncated
    lines[4] = lines[4].replace(",", ",x", 1)             # not a number
    gt.write_text("\n".join(lines) + "\n")
    ds = open_dataset(copy)
    cam = ds.scenario("S01").camera("c002")
    assert f"{gt}: line 3: expected 10 comma-separated fields (frame,id,left,top,width,height,1,-1,-1,-1), got 4" \
        in cam.problem
    assert f"{gt}: line 5: expected numbers" in cam.problem
    assert [p.kind for p in ds.problems] == ["gt", "gt"]
    with pytest.raises(SpecError) as exc:
        cam.gt()
    assert f"{gt}: line 3:" in str(exc.value)
    assert cam.playable                                   # the video still replays
    assert ds.scenario("S01").camera("c001").gt()         # the others still read
    with pytest.raises(SpecError, match="line 3"):
        open_dataset(copy, strict=True)


def test_gt_frame_beyond_framenum(copy):
    gt = copy / "train" / "S01" / "c001" / "gt" / "gt.txt"
    gt.write_text(gt.read_text() + "99,1,0,0,10,10,1,-1,-1,-1\n")
    cam = open_dataset(copy).scenario("S01").camera("c001")
    assert "frame 99: beyond the camera's 20 frames (cam_framenum)" in cam.problem


def test_missing_video_reported_for_that_camera_only(copy):
    video = copy / "train" / "S01" / "c002" / "vdo.avi"
    video.unlink()
    ds = open_dataset(copy)
    sc = ds.scenario("S01")
    bad = sc.camera("c002")
    assert not bad.playable
    assert bad.problem == f"{video}: missing video for train/S01/c002"
    assert [p.where for p in ds.problems] == ["train/S01/c002"]
    with pytest.raises(SpecError, match="missing video"):
        next(bad.frames())
    assert bad.gt()                                        # its gt still reads
    good = [c for c in ds.cameras(playable_only=True)]
    assert [c.name for c in good] == ["c001", "c003"]
    for cam in good:
        assert sum(1 for _ in cam.frames()) == cam.frame_count
    with pytest.raises(SpecError, match="missing video"):
        ds.raise_for_problems()


def test_missing_timestamp_entry(copy):
    stamps = copy / "cam_timestamp" / "S01.txt"
    stamps.write_text("".join(ln + "\n" for ln in stamps.read_text().splitlines() if not ln.startswith("c003")))
    cam = open_dataset(copy).scenario("S01").camera("c003")
    assert not cam.playable and cam.offset_s is None
    assert cam.problem == f"{stamps}: no entry for c003; expected a line 'c003 <start offset seconds>'"
    with pytest.raises(SpecError, match="no entry for c003"):
        cam.timestamp(1)
    stamps.unlink()
    ds = open_dataset(copy)
    assert all(f"{stamps}: missing" in c.problem for c in ds.cameras())


def test_missing_framenum_falls_back_to_the_video(copy):
    (copy / "cam_framenum" / "S01.txt").unlink()
    cam = open_dataset(copy).scenario("S01").camera("c003")
    assert cam.playable and cam.frame_count == 16
    assert "using the video's 16 frames" in cam.problem


def test_not_a_dataset(tmp_path):
    with pytest.raises(SpecError, match="no train, validation or test directory"):
        open_dataset(tmp_path)
    with pytest.raises(SpecError, match="not a directory"):
        open_dataset(tmp_path / "nope")


def test_unknown_scenario_and_camera(written):
    root, _ = written
    ds = open_dataset(root)
    with pytest.raises(SpecError, match="no scenario 'S09'; scenarios: train/S01"):
        ds.scenario("S09")
    with pytest.raises(SpecError, match="no camera 'c009'; cameras: c001, c002, c003"):
        ds.scenario("S01").camera("c009")
