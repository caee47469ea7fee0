"""A zoo that `zoo build` + `zoo profile` + `zoo eval` wrote is what `jellybean plan` plans with,
and the plan's variant follows the accuracy target."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from jellybean.cli.main import app
from jellybean.replay.scene import SceneConfig, write_scene
from jellybean.spec.base import load_model
from jellybean.spec.zoo import Zoo

REPO = Path(__file__).resolve().parents[2]
DETECTORS = {"w050": REPO / "model_zoo/aicity/detector_w050.onnx", "w100": REPO / "model_zoo/aicity/detector_w100.onnx"}
runner = CliRunner()


def run(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def measured_zoo(tmp_path_factory) -> Path:
    for path in DETECTORS.values():
        if not path.exists():
            pytest.fail(f"shipped model missing: {path}")
    root = tmp_path_factory.mktemp("zoo-plan")
    write_scene(root / "scene", SceneConfig(cameras=2, seconds=2, seed=5))
    zoo = root / "zoo"
    for family, model in DETECTORS.items():
        run("zoo", "build", model, "--operator", "detect", "--task", "detection", "--family", family,
            "--calibration", root / "scene", "--variants", "int8-static", "--no-tensorrt", "-q", "-o", zoo)
    # Each variant in a saturated agent, long enough that w050's smaller model shows through the
    # decode and post-processing both detectors share.
    run("zoo", "profile", zoo, "--hardware", "box", "--batch-sizes", "1", "--threads", "1", "--runs", "100",
        "--min-seconds", "1", "--max-seconds", "2", "-q")
    run("zoo", "eval", zoo, "--data", root / "scene", "--every", "3", "-q")
    return zoo


def capacity(v) -> float:
    return 1000.0 / v.profiles["box"].latency_ms


def rate_separating(fast: float, slow: float) -> float:
    """A frame rate (a whole number of 10 fps cameras) at which workers of capacity ``fast`` are
    fewer than of capacity ``slow``: k slow workers then need k + 1, the fast ones at most k."""
    k = math.ceil(slow / (fast - slow)) + 1
    return 10 * math.ceil((k * slow + 1) / 10)


def write_specs(root: Path, zoo: Path, target: float, rate: float) -> list[str]:
    (root / "hardware.yaml").write_text(yaml.safe_dump(
        {"kind": "hardware", "hardware": [{"name": "box", "tier": "edge-dc", "price_per_hour": 0.1, "memory_mb": 8000}]}))
    (root / "workflow.yaml").write_text(yaml.safe_dump({
        "kind": "workflow", "name": "detect-only",
        "sources": [{"name": "camera", "rate": 10, "item_kb": 60}],
        "operators": [{"name": "detect", "inputs": ["camera"]}],
        "slo": {"accuracy": target},
    }))
    (root / "infra.yaml").write_text(yaml.safe_dump({
        "kind": "infrastructure", "name": "one-site", "hardware_catalog": ["hardware.yaml"],
        "sites": [{"name": "dc", "tier": "edge-dc", "hardware": {"box": 1000}, "sources": {"camera": int(rate / 10)}}],
    }))
    return ["-w", root / "workflow.yaml", "-z", zoo / "manifest.yaml", "-i", root / "infra.yaml"]


def cheapest_meeting(zoo: Zoo, target: float, rate: float) -> set[str]:
    """Variants of least cost (whole workers at the measured capacity) among those accurate enough."""
    costs = {}
    for v in zoo.operator("detect").variants:
        if v.accuracy is not None and v.accuracy >= target:
            costs[v.name] = math.ceil(rate / capacity(v) - 1e-9)
    best = min(costs.values())
    return {name for name, c in costs.items() if c == best}


def test_measured_zoo_is_valid_and_complete(measured_zoo):
    zoo = load_model(Zoo, measured_zoo / "manifest.yaml")
    names = [v.name for v in zoo.operator("detect").variants]
    assert names == ["w050-fp32", "w050-int8-static", "w100-fp32", "w100-int8-static"]
    for v in zoo.operator("detect").variants:
        assert "box" in v.profiles and v.profiles["box"].latency_ms > 0
        assert v.accuracy is not None and "ap50" in v.metrics and v.accuracy == pytest.approx(v.metrics["ap50"])


def pareto_front(variants) -> list:
    """Variants no other is both as accurate and faster than, most accurate first."""
    front = []
    for v in sorted(variants, key=lambda v: (-v.accuracy, -capacity(v))):
        if not front or capacity(v) > capacity(front[-1]):
            front.append(v)
    return front


def test_plan_follows_the_accuracy_target(measured_zoo, tmp_path):
    """The planner picks the cheapest variant meeting each target, from the zoo's own figures.

    Which trade-off the zoo shows is measured on a shared machine: the half-width detector is
    usually the faster, but under load the two can swap. So the targets come from the measured
    Pareto front: with two or more points, the low target must pick a faster, less accurate
    variant than the high one; with one point, that variant is the answer at every target."""
    zoo = load_model(Zoo, measured_zoo / "manifest.yaml")
    variants = zoo.operator("detect").variants
    front = pareto_front(variants)
    accurate, fast = front[0], front[-1]
    low, high = fast.accuracy, accurate.accuracy
    rate = rate_separating(capacity(fast), capacity(accurate)) if fast is not accurate else 10 * math.ceil(capacity(accurate) * 3 / 10)
    chosen = {}
    for target in (min(v.accuracy for v in variants), low, high):
        plan = json.loads(run("plan", *write_specs(tmp_path, measured_zoo, target, rate), "--json"))
        chosen[target] = plan["variants"]["detect"]
        assert chosen[target] in cheapest_meeting(zoo, target, rate), (target, chosen[target])
        assert plan["predicted"]["accuracy"] >= target
    assert chosen[high] in {v.name for v in variants if v.accuracy == high}
    if len(front) > 1:
        assert chosen[low] != chosen[high], [(v.name, v.accuracy, capacity(v)) for v in variants]
    else:
        assert set(chosen.values()) == {accurate.name}
