"""`jellybean scene`: the real app writes a scenario; bad options give one line and no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from jellybean.cli.main import app
from jellybean.replay.cityflow import open_dataset

runner = CliRunner()
TINY = ["--width", "96", "--height", "64", "--seconds", "1"]


def run(*args: str):
    return runner.invoke(app, list(args))


def test_scene_writes_a_scenario(tmp_path):
    result = run("scene", str(tmp_path), "--cameras", "2", "--seed", "5", "--scenario", "S03",
                 "--split", "validation", "--slow-camera", "2", *TINY)
    assert result.exit_code == 0, result.output
    for text in ("camera", "gt boxes", "c001", "c002", "2 cameras"):
        assert text in result.output
    ds = open_dataset(tmp_path, strict=True)
    cams = ds.scenario("S03", "validation").cameras
    assert [(c.name, c.fps, c.frame_count) for c in cams] == [("c001", 10.0, 10), ("c002", 8.0, 8)]
    assert sum(len(c.gt()) for c in cams) > 0
    again = run("scene", str(tmp_path), "--cameras", "2", "--scenario", "S03", "--split", "validation", *TINY)
    assert again.exit_code == 1
    assert again.output.strip().splitlines() == [
        f"error: {tmp_path / 'validation' / 'S03'}: already exists and is not empty; pass --overwrite to replace it "
        "or choose another --scenario or DIR"]
    over = run("scene", str(tmp_path), "--cameras", "1", "--scenario", "S03", "--split", "validation",
               "--overwrite", *TINY)
    assert over.exit_code == 0, over.output
    assert [c.name for c in open_dataset(tmp_path).scenario("S03").cameras] == ["c001"]


@pytest.mark.parametrize("args, message", [
    (["--cameras", "0"], "error: --cameras: must be at least 1 (got 0)"),
    (["--seconds", "0"], "error: --seconds: must be a number greater than 0 (got 0)"),
    (["--seconds", "-2"], "error: --seconds: must be a number greater than 0 (got -2)"),
    (["--split", "dev"], "error: --split: unknown split 'dev'; use one of: train, validation, test"),
    (["--slow-camera", "9"], "error: --slow-camera: must be a camera number from 1 to 4 (got 9)"),
])
def test_bad_options_one_line(tmp_path, args, message):
    result = run("scene", str(tmp_path / "out"), *args)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [message]
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_bad_option_real_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "jellybean", "scene", str(tmp_path), "--cameras", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["error: --cameras: must be at least 1 (got 0)"]
    assert proc.stdout == ""
