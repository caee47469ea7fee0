"""`sampled-reid`: re-ID after a motion-only tracker, on every crop (exact) or on a growing sample of
each track's whole views, stopped by the association decision (issue 16, part 2)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from jellybean.agents.items import Item
from jellybean.agents.operators import OperatorConfig, create
from jellybean.agents.operators.tracking import ltwh_clear_of_edges
from jellybean.errors import JellyBeanError
from jellybean.replay.cityflow import open_dataset
from jellybean.replay.driver import encode_frame
from jellybean.replay.scene import SceneConfig, write_scene

ZOO = Path(__file__).resolve().parents[2] / "model_zoo" / "aicity"
DETECTOR = ZOO / "detector_w100.onnx"
REID = ZOO / "reid_w100.onnx"


def config(operator: str, model: Path | None = None, **params) -> OperatorConfig:
    return OperatorConfig(operator=operator, variant=f"{operator}-test", model=model, provider="cpu", threads=1,
                          params=params)


@pytest.fixture(scope="module")
def tracks(tmp_path_factory) -> list[Item]:
    """A 3-camera, 6 s scene through the detector and a motion-only SORT tracker, in capture order."""
    root = tmp_path_factory.mktemp("sampled_reid_scene")
    write_scene(root, SceneConfig(cameras=3, seconds=6, seed=1))
    frames = []
    for cam in open_dataset(root, strict=True).cameras():
        frames.extend((cam.timestamp(k), cam, k, image) for k, image in cam.frames())
    frames.sort(key=lambda f: (f[0], f[1].name))
    out = []
    with create("yolov8-detector", config("detect", DETECTOR)) as det, create("sort-tracker", config("track")) as trk:
        for t, cam, k, image in frames:
            out.append(trk.process(det.process([encode_frame(cam, k, image, capture_ts=t)]))[0])
    return out


def whole_views(item: Item) -> np.ndarray:
    ltwh = np.array([b[:4] for b in item.meta["boxes"]], np.float64).reshape(-1, 4)
    return ltwh_clear_of_edges(ltwh, item.meta["size"], 2.0)


def test_a_tracker_fed_detections_carries_one_crop_per_reported_box(tracks):
    boxed = [t for t in tracks if t.meta["ids"]]
    assert len(boxed) > 50
    for t in boxed:
        assert len(t.blobs) == len(t.meta["boxes"]) == len(t.meta["ids"])
        assert all(b[:2] == b"\xff\xd8" for b in t.blobs)    # JPEG crops


def test_exact_embeds_every_crop_and_gives_each_track_the_mean_of_its_whole_views(tracks):
    # Reference: the stateless embedder on the same crops, averaged by hand.
    with create("sampled-reid", config("reid", REID, approx=False)) as exact, \
            create("reid-embedder", config("reid", REID)) as plain:
        sums: dict[tuple[str, int], np.ndarray] = {}
        embedded = crops = 0
        for item in tracks:
            out = exact.process([item])[0]
            crops += len(item.meta["ids"])
            embedded += out.meta["embedded"]
            if not item.meta["ids"]:
                continue
            reference = plain.process([item.derive("detections", meta={"boxes": item.meta["boxes"],
                                                                       "size": item.meta["size"]},
                                                   blobs=item.blobs)])[0].arrays["embeddings"].astype(np.float64)
            for k, (i, whole) in enumerate(zip(item.meta["ids"], whole_views(item))):
                key = (item.stream, i)
                if whole:
                    sums[key] = sums.get(key, 0) + reference[k]
                if key in sums:
                    want = sums[key] / np.linalg.norm(sums[key])
                    got = out.arrays["embeddings"][k].astype(np.float64)
                    assert np.dot(want, got) > 0.999, (key, item.frame)
    assert embedded == crops > 300


def test_approx_embeds_a_spaced_capped_sample_of_whole_views_and_far_fewer_crops(tracks):
    params = dict(min_samples=3, max_samples=6, spacing=3, dense=2)
    with create("sampled-reid", config("reid", REID, **params)) as approx:
        sampled: dict[tuple[str, int], list[int]] = defaultdict(list)
        whole_seen: dict[tuple[str, int], int] = defaultdict(int)
        crops = 0
        for item in tracks:
            before = {k: len(v) for k, v in sampled.items()}
            out = approx.process([item])[0]
            crops += len(item.meta["ids"])
            for i, whole in zip(item.meta["ids"], whole_views(item)):
                whole_seen[(item.stream, i)] += bool(whole)
            # Which tracklets got a crop embedded in this item: their sample grew.
            for key, s in approx.samples.items():
                if len(s.embeddings) > before.get(key, 0):
                    sampled[key].append(item.frame)
            assert out.meta["embedded"] == sum(len(v) - before.get(k, 0) for k, v in sampled.items())
        total = sum(len(v) for v in sampled.values())
    assert 0 < total < crops / 3, (total, crops)
    for key, frames in sampled.items():
        assert len(frames) <= params["max_samples"], key
        # The first `dense` whole views in a row, then one every `spacing` frames at most.
        later = frames[params["dense"] - 1:]
        assert all(b - a >= params["spacing"] for a, b in zip(later, later[1:])), (key, frames)
        assert len(frames) <= whole_seen[key]
    # Tracklets seen whole long enough were sampled at least min_samples times (never stopped early).
    long_seen = [k for k, n in whole_seen.items() if n >= params["spacing"] * params["min_samples"] + 3]
    assert long_seen and all(len(sampled[k]) >= params["min_samples"] for k in long_seen)


def test_tracks_without_crops_are_dropped_with_the_fix_and_the_next_item_goes_on(tracks, caplog):
    item = next(t for t in tracks if len(t.meta["ids"]) >= 2)
    with create("sampled-reid", config("reid", REID)) as approx:
        out = approx.process([item.derive("tracks", meta=dict(item.meta), blobs=[])])[0]
        assert out.dropped and "feed the tracker detections, not features" in out.dropped
        assert "feed the tracker detections" in caplog.text
        assert approx.process([item])[0].dropped is None


@pytest.mark.parametrize("params, field", [({"min_samples": 1}, "min_samples"), ({"max_samples": 2}, "min_samples"),
                                           ({"spacing": 0}, "spacing"), ({"tau": 1.5}, "tau"),
                                           ({"threshold": float("nan")}, "threshold"), ({"draws": 100}, "draws")])
def test_bad_params_name_the_field(params, field):
    with pytest.raises(JellyBeanError, match=field):
        create("sampled-reid", config("reid", REID, **params))
