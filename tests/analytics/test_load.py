"""Filling the store from boxes: a synthetic scene's gt files (CityFlow layout), the replay sink's
delivered tracks (and `replay --track-store`), and a malformed gt file."""

from __future__ import annotations

import numpy as np
import pytest

from jellybean.analytics import load, store
from jellybean.errors import SpecError
from jellybean.replay.cityflow import open_dataset
from jellybean.replay.scene import DT, SceneConfig, build_scene, write_scene
from jellybean.replay.sink import Delivered

SCENE = SceneConfig(cameras=2, seconds=6, seed=3, width=160, height=96)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("scene")
    write_scene(root, SCENE)
    return root


def test_the_gt_boxes_become_observations_with_ground_speeds(scene, tmp_path):
    columns, hz = load.from_dataset(scene)
    dataset = open_dataset(scene, strict=True)
    cameras = dataset.cameras()
    assert hz == 10.0
    gt = {c.name: c.gt() for c in cameras}
    # every box of a track seen at least twice is one observation
    for cam in cameras:
        ids, counts = np.unique([r.id for r in gt[cam.name]], return_counts=True)
        mine = columns["approach"] == cam.name
        assert mine.sum() == counts[counts > 1].sum()
        assert set(columns["track_id"][mine]) == set(ids[counts > 1])
        frames = np.array(sorted(r.frame for r in gt[cam.name]))
        assert columns["t"][mine].min() == pytest.approx(cam.offset_s + (frames[0] - 1) / cam.fps)
    assert set(columns["intersection"]) == {"S01"}
    # the scene's vehicles drive at 8.5-16 m/s when free and stop at red lights
    speed = columns["speed"]
    assert 8 < np.percentile(speed, 90) < 18 and np.mean(speed < 1.0) > 0.02
    stopped = speed < 1.0
    assert np.all(columns["dwell"][~stopped] == 0) and columns["dwell"][stopped].max() >= 1.0
    written = load.write(tmp_path / "s.duckdb", columns, hz)
    info = store.info(tmp_path / "s.duckdb")
    assert written == info.rows == columns["t"].size and info.hz == 10.0
    assert {a.approach for a in info.approaches} == {"c001", "c002"}


def test_the_speeds_are_the_simulated_vehicles_speeds():
    # the scene's own simulation (world x per 0.05 s step of every vehicle), differenced, against the
    # loader's speeds from the gt boxes through the calibration; at 640x360 a pixel is ~7 cm of road
    built = build_scene(SceneConfig(cameras=1, seconds=8, seed=3, width=640, height=360))
    cam = built.cameras[0]
    rows = np.array(built.gt_rows(0), dtype=float)
    columns = load.observations("S01", cam.name, rows[:, 0], rows[:, 1], rows[:, 2:6], cam.homography, cam.fps,
                                cam.offset_s)
    track_of = {ident: track for track, ident in built.ids.items()}
    truth = []
    for ident, t in zip(columns["track_id"], columns["t"]):
        xs = built.tracks[track_of[int(ident)]].xs
        step = int(round((t - built._t0) / DT)) - built.tracks[track_of[int(ident)]].start
        step = min(max(step, 1), len(xs) - 2)
        truth.append(abs(xs[step + 1] - xs[step - 1]) / (2 * DT))
    error = np.abs(columns["speed"] - np.array(truth))
    assert error.size > 300
    # boxes cut by the frame's edge move their bottom centre: a few large errors, most tiny
    assert np.median(error) < 0.3 and np.percentile(error, 75) < 0.5


def test_the_sinks_delivered_tracks_load_as_the_gt_does(scene, tmp_path):
    from jellybean.cli.replay import store_tracks

    scenario = open_dataset(scene, strict=True).scenarios[0]
    delivered = {}
    for cam in scenario.cameras:
        by_frame: dict[int, list] = {}
        for r in cam.gt():
            by_frame.setdefault(r.frame, []).append(r)
        for frame, rows in by_frame.items():
            delivered[(cam.key, frame)] = Delivered(
                stream=cam.key, frame=frame, capture_ts=0.0, received_ts=0.0, dropped=None,
                boxes=[[r.left, r.top, r.width, r.height] for r in rows], ids=[r.id for r in rows], trace=[])
    delivered[("train/S01/c001", 999)] = Delivered("train/S01/c001", 999, 0.0, 0.0, "deadline", [[1, 2, 3, 4]], [5],
                                                   [])  # a drop: not an observation
    from_sink, hz = load.from_delivered(delivered, scenario)
    from_gt, _ = load.from_dataset(scene)
    order = lambda c: np.lexsort((c["t"], c["track_id"], c["approach"].astype(str)))  # noqa: E731
    for name in store.COLUMNS:
        assert np.array_equal(from_sink[name][order(from_sink)], from_gt[name][order(from_gt)])

    class Run:   # what `replay` hands to store_tracks: its RunData, of which the sink is used
        class sink:
            snapshot = staticmethod(lambda: delivered)

    path = tmp_path / "tracks.duckdb"
    assert store_tracks(path, Run, scenario) == from_gt["t"].size
    assert store_tracks(path, Run, scenario) == from_gt["t"].size     # a second run appends
    assert store.info(path).rows == 2 * from_gt["t"].size
    from jellybean.analytics.errors import AnalyticsError

    stray = {("train/S09/c001", 1): Delivered("train/S09/c001", 1, 0.0, 0.0, None, [[1, 2, 3, 4]], [5], [])}
    with pytest.raises(AnalyticsError, match="train/S09/c001, not a camera of train/S01"):
        load.from_delivered(stray, scenario)


def test_replay_has_the_track_store_option():
    from typer.testing import CliRunner

    from jellybean.cli.main import app

    result = CliRunner().invoke(app, ["replay", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--track-store" in result.output


def test_a_malformed_gt_file_is_named_by_line(scene, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(scene, broken)
    gt = broken / "train" / "S01" / "c002" / "gt" / "gt.txt"
    gt.write_text(gt.read_text() + "12,34,5\n")
    with pytest.raises(SpecError) as err:
        load.from_dataset(broken)
    assert "c002/gt/gt.txt: line" in str(err.value) and "10 comma-separated fields" in str(err.value)


def test_a_store_of_another_rate_is_refused(scene, tmp_path):
    columns, _ = load.from_dataset(scene)
    path = tmp_path / "s.duckdb"
    load.write(path, columns, 10.0)
    from jellybean.analytics.errors import AnalyticsError

    with pytest.raises(AnalyticsError, match="holds observations at 10 per second, these are at 8"):
        load.write(path, columns, 8.0)
