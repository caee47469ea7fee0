"""Replay's frame items: the frame's time and its camera's calibration travel in meta, and a camera
without a (usable) calibration.txt still replays."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from jellybean.cli.main import app
from jellybean.replay.cityflow import open_dataset
from jellybean.replay.driver import camera_calibration, encode_frame
from jellybean.replay.scene import SceneConfig, write_scene

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "aicity"
runner = CliRunner()


@pytest.fixture
def small_scene(tmp_path) -> Path:
    write_scene(tmp_path, SceneConfig(cameras=2, seconds=1, seed=4, width=160, height=96))
    return tmp_path


def _cameras(root: Path) -> dict:
    return {c.name: c for c in open_dataset(root, strict=True).cameras()}


def test_frame_items_carry_the_frame_time_and_the_calibration_read_once(small_scene):
    cam = _cameras(small_scene)["c002"]
    frame, image = next(cam.frames(3, 3))
    item = encode_frame(cam, frame, image, capture_ts=1234.5)
    assert item.capture_ts == 1234.5 and item.stream == cam.key
    assert item.meta["t"] == pytest.approx(cam.offset_s + 2 / cam.fps)
    assert np.allclose(item.meta["calibration"], cam.homography())
    assert json.dumps(item.meta["calibration"])                        # plain JSON: a 3x3 nested list
    # read once per camera: later frames use the first reading, even if the file goes away
    cam.calibration_path.unlink()
    assert encode_frame(cam, frame, image, 0.0).meta["calibration"] is item.meta["calibration"]
    assert camera_calibration(cam) is item.meta["calibration"]


def test_a_camera_without_a_usable_calibration_sends_frames_without_one(small_scene, caplog):
    (small_scene / "train" / "S01" / "c001" / "calibration.txt").unlink()
    bad = small_scene / "train" / "S01" / "c002" / "calibration.txt"
    bad.write_text("Homography matrix: 1 2 3;4 5\n")
    cams = _cameras(small_scene)
    with caplog.at_level(logging.WARNING, logger="jellybean.replay.driver"):
        for name in ("c001", "c002"):
            frame, image = next(cams[name].frames())
            item = encode_frame(cams[name], frame, image, 0.0)
            assert "calibration" not in item.meta and item.meta["t"] == pytest.approx(cams[name].offset_s)
    assert str(bad) in caplog.text and "without calibration" in caplog.text


def test_local_replay_with_one_camera_without_calibration(tmp_path):
    plan = tmp_path / "plan.yaml"
    result = runner.invoke(app, ["plan", "-w", str(EXAMPLE / "workflow.yaml"), "-z", str(EXAMPLE / "zoo.yaml"),
                                 "-i", str(EXAMPLE / "infrastructure.yaml"), "-o", str(plan)])
    assert result.exit_code == 0, result.output
    scene = tmp_path / "scene"
    write_scene(scene, SceneConfig(cameras=4, seconds=4, seed=11))
    (scene / "train" / "S01" / "c002" / "calibration.txt").unlink()
    result = runner.invoke(app, ["replay", str(scene), "--local", "--plan", str(plan), "--speed", "0", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["partial"] is False
    assert all(c["frames_in"] == 40 and c["frames_out"] == 40 for c in data["cameras"].values())
    assert data["tracking"]["idf1"] > 0.5
