"""`zoo profile` measures variants as an agent's workers run them: on frames of a scene and what the
zoo's own operators make of them, rates in the plan's items, the bare model beside it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from jellybean.errors import JellyBeanError
from jellybean.spec.base import load_model
from jellybean.spec.zoo import Zoo
from jellybean.zoo.profile import profile_zoo
from jellybean.zoo.workload import build_workload

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "model_zoo" / "aicity"
FAST = dict(warmup=1, runs=5, min_seconds=0.0, max_seconds=1.0, intra_op_threads=1, frames=30)


def write_zoo(root: Path, operators: list[dict]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for op in operators:
        for v in op["variants"]:
            if v.get("model"):
                shutil.copy(MODELS / v["model"], root / v["model"])
    (root / "manifest.yaml").write_text(yaml.safe_dump({"kind": "model-zoo", "name": "t", "operators": operators}))
    return root


PIPELINE = [
    {"name": "detect", "task": "detection", "variants": [
        {"name": "det-w050", "model": "detector_w050.onnx", "accuracy": 0.89},
        {"name": "det-w050-s2", "model": "detector_w050.onnx", "accuracy": 0.59, "params": {"stride": 2}}]},
    {"name": "reid", "task": "reid", "variants": [{"name": "reid-w050", "model": "reid_w050.onnx", "accuracy": 0.6}]},
    {"name": "track", "task": "tracking", "variants": [{"name": "sort", "runtime": "sort-tracker"}]},
    {"name": "associate", "task": "association", "variants": [{"name": "mtmc", "runtime": "mtmc-associator"}]},
]


@pytest.fixture(scope="module")
def pipeline_zoo(tmp_path_factory) -> Path:
    return write_zoo(tmp_path_factory.mktemp("opzoo") / "zoo", PIPELINE)


def test_the_workload_is_made_by_the_zoos_own_operators(pipeline_zoo):
    zoo = load_model(Zoo, pipeline_zoo / "manifest.yaml")
    workload = build_workload(zoo, pipeline_zoo, frames=40, threads=1)
    assert set(workload.items) == {"frame", "detections", "features", "tracks", "identities"}
    assert len(workload.items["frame"]) == 40
    # Every stage keeps one item per frame, and the detector found vehicles in the synthetic scene.
    assert all(len(v) == 40 for v in workload.items.values())
    boxes = sum(i.units for i in workload.items["detections"])
    assert boxes > 40
    assert workload.made_by["features"] == "detect/det-w050 -> reid/reid-w050"  # the most accurate detector
    assert "per item" in workload.describe("detections") and "40 frame items" in workload.describe("frame")


def test_every_operator_is_profiled_as_it_runs(pipeline_zoo):
    # Long enough at batch 1 for /proc's CPU ticks (10 ms) to measure the CPU per item.
    # The bare models' figures in this process (`isolate=False`): the CLI's tests time them isolated.
    result = profile_zoo(pipeline_zoo, "box", batch_sizes=[1, 4], isolate=False,
                         **{**FAST, "min_seconds": 1.0, "max_seconds": 2.0})
    assert result.skipped == () and result.notes == {}
    zoo = load_model(Zoo, pipeline_zoo / "manifest.yaml")
    p = {(o.name, v.name): v.profiles["box"] for o in zoo.operators for v in o.variants}
    for key, prof in p.items():
        assert prof.basis == "operator" and prof.threads == 1, key
        assert 0 < prof.latency_ms <= prof.p99_ms
        # latency_ms is the seconds per item at batch 1, so the planner's 1000 / latency_ms is the rate.
        assert 1000 / prof.latency_ms == pytest.approx(prof.throughput[1], rel=1e-3)
    # Models keep their bare time beside; a frame costs the detector more than its model call.
    assert p["detect", "det-w050"].model_ms is not None and p["detect", "det-w050"].latency_ms > \
        p["detect", "det-w050"].model_ms
    assert p["track", "sort"].model_ms is None and p["associate", "mtmc"].model_ms is None
    # Keyed operators (state per stream) are fed one item at a time, as on an agent.
    assert set(p["track", "sort"].throughput) == {1} and set(p["detect", "det-w050"].throughput) == {1, 4}
    # A stride-2 detector decodes and infers every other frame only: less CPU per frame (the agent's
    # own work per message remains, so by how much depends on the machine's load: 0.55-0.8 of the
    # full detector's here; how much, and what it does to frames per second, is a benchmark's
    # business: a full run saw 210.6 against 214.8 frames/s at batch 1 on a busy machine).
    strided, full = p["detect", "det-w050-s2"], p["detect", "det-w050"]
    assert strided.cpu_ms < full.cpu_ms
    assert "boxes" not in p["reid", "reid-w050"].inputs and "detections items" in p["reid", "reid-w050"].inputs


def test_a_variant_without_inputs_is_profiled_as_its_bare_model_and_says_so(tmp_path):
    zoo_dir = write_zoo(tmp_path / "zoo", [PIPELINE[1]])  # re-ID with no detector to make its crops
    result = profile_zoo(zoo_dir, "box", batch_sizes=[1], **FAST)
    assert [m.variant for m in result.measured] == ["reid-w050"]
    assert "nothing in the zoo makes its inputs (detections)" in result.notes[("reid", "reid-w050")]
    prof = load_model(Zoo, zoo_dir / "manifest.yaml").operators[0].variants[0].profiles["box"]
    assert prof.basis == "model" and prof.model_ms == prof.latency_ms


def test_a_builtin_operator_without_inputs_is_skipped_with_the_reason(tmp_path):
    zoo_dir = write_zoo(tmp_path / "zoo", [PIPELINE[2]])
    with pytest.raises(JellyBeanError, match="a built-in operator that cannot be profiled here: nothing in the zoo"):
        profile_zoo(zoo_dir, "box", **FAST)


def test_a_scene_that_is_not_one_is_a_clear_error(pipeline_zoo, tmp_path):
    with pytest.raises(JellyBeanError, match="--scene: .*expected the CityFlow layout"):
        profile_zoo(pipeline_zoo, "box", scene=tmp_path, **FAST)


def test_each_pass_over_the_workload_has_new_tracks_later_in_time():
    from jellybean.zoo.saturate import TRACK_ID_STEP, _later

    meta = {"t": 1.5, "ids": [3, 4], "boxes": [[0, 0, 1, 1], [2, 2, 1, 1]]}
    assert _later(meta, 0.0, 0) is meta
    later = _later(meta, 4.0, 2)   # two passes of a 2 s workload
    assert later["t"] == 5.5 and later["ids"] == [3 + 2 * TRACK_ID_STEP, 4 + 2 * TRACK_ID_STEP]
    assert later["boxes"] == meta["boxes"] and meta["ids"] == [3, 4]   # the workload's own item unchanged
