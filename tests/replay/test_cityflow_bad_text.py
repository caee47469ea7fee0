"""The CityFlow reader on text files that are not UTF-8 or hold non-finite numbers: named problems
(SpecError in strict mode), never a UnicodeDecodeError (issue 9, item 6)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from jellybean.errors import SpecError
from jellybean.replay.cityflow import open_dataset, parse_homography
from jellybean.replay.scene import SceneConfig, write_scene

CONFIG = SceneConfig(cameras=2, seconds=1, seed=5, width=96, height=64)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scene")
    write_scene(root, CONFIG)
    return root


@pytest.fixture
def copy(written: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(written, tmp_path / "data"))


def messages(root: Path) -> list[str]:
    return [p.message for p in open_dataset(root).problems]


def test_non_utf8_cam_timestamp_is_a_named_problem(copy: Path) -> None:
    path = copy / "cam_timestamp" / "S01.txt"
    path.write_bytes(b"c001 0.0\nc002 \xff\xfe\n")
    found = messages(copy)
    assert f"{path}: not UTF-8 text (byte 0xff at offset 14); save it as UTF-8 text" in found
    ds = open_dataset(copy)
    assert not any(c.playable for c in ds.cameras())  # no offsets: nothing can be replayed in time
    with pytest.raises(SpecError, match="not UTF-8 text"):
        open_dataset(copy, strict=True)


def test_non_utf8_framenum_and_gt_are_named_problems(copy: Path) -> None:
    framenum = copy / "cam_framenum" / "S01.txt"
    framenum.write_bytes(b"\x80c001 10\n")
    gt = copy / "train" / "S01" / "c001" / "gt" / "gt.txt"
    gt.write_bytes(gt.read_bytes() + b"\xc3\x28\n")
    found = "\n".join(messages(copy))
    assert f"{framenum}: not UTF-8 text (byte 0x80 at offset 0)" in found
    assert f"{gt}: not UTF-8 text" in found
    with pytest.raises(SpecError, match="not UTF-8 text"):
        open_dataset(copy).scenario("S01").camera("c001").gt()


@pytest.mark.parametrize("offset", ["nan", "inf", "-inf"])
def test_non_finite_offset_is_refused(copy: Path, offset: str) -> None:
    path = copy / "cam_timestamp" / "S01.txt"
    path.write_text(f"c001 {offset}\nc002 0\n")
    found = messages(copy)
    assert f"{path}: line 1: expected 'cNNN <start offset seconds>', got 'c001 {offset}'" in found
    cam = open_dataset(copy).scenario("S01").camera("c001")
    assert cam.offset_s is None and not cam.playable


def test_negative_frame_count_is_refused(copy: Path) -> None:
    path = copy / "cam_framenum" / "S01.txt"
    path.write_text("c001 -5\nc002 10\n")
    assert f"{path}: line 1: expected 'cNNN <number of frames>', got 'c001 -5'" in messages(copy)


def test_non_finite_gt_box_is_a_named_line(copy: Path) -> None:
    gt = copy / "train" / "S01" / "c001" / "gt" / "gt.txt"
    gt.write_text("1,1,nan,10,20,20,1,-1,-1,-1\n")
    assert any(m.startswith(f"{gt}: line 1: expected numbers") for m in messages(copy))


def test_non_finite_or_non_utf8_homography_is_a_spec_error(tmp_path: Path) -> None:
    calib = tmp_path / "calibration.txt"
    calib.write_text("Homography matrix: 1 0 0;0 nan 0;0 0 1\n")
    with pytest.raises(SpecError, match="9 finite numbers"):
        parse_homography(calib)
    calib.write_bytes(b"Homography matrix: 1 0 0;0 1 0;0 0 \xff\n")
    with pytest.raises(SpecError, match="not UTF-8 text"):
        parse_homography(calib)
