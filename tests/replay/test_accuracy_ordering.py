"""The plan's predicted accuracy ordering holds in measurement (IDF1 on a synthetic scene).

Two plans of the AI City example, for a low and a high accuracy target, on an intersection with 8
cameras (so the Jetson cannot detect on every frame at full rate and the cheap plan strides);
both replayed locally on the same scene; the higher target measures the higher IDF1."""

from __future__ import annotations

from pathlib import Path

import pytest

from jellybean.agents.deployment import Deployment
from jellybean.planner.build import build_problem, load_inputs
from jellybean.planner.strategies import make_plan
from jellybean.replay.cityflow import open_dataset
from jellybean.replay.local import run_local
from jellybean.replay.outcome import build_result
from jellybean.replay.scene import SceneConfig, write_scene

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "aicity"


def _specs(tmp: Path, target: float) -> tuple[Path, Path, Path]:
    workflow = tmp / f"workflow-{target}.yaml"
    workflow.write_text((EXAMPLE / "workflow.yaml").read_text().replace("accuracy: 0.50", f"accuracy: {target}"))
    infra = tmp / "infrastructure.yaml"
    infra.write_text((EXAMPLE / "infrastructure.yaml").read_text()
                     .replace("../../tiers", str(REPO / "tiers"))
                     .replace("sources: {camera: 4}", "sources: {camera: 8}"))
    return workflow, EXAMPLE / "zoo.yaml", infra


def _deployment(tmp: Path, target: float) -> Deployment:
    inputs = load_inputs(*_specs(tmp, target))
    plan = make_plan(build_problem(inputs), "optimal", time_limit=20, inputs=inputs.paths)
    return Deployment(plan=plan, inputs=inputs, zoo_dir=EXAMPLE)


@pytest.mark.parametrize("seed", [3])
def test_the_higher_target_plan_measures_the_higher_idf1(tmp_path, seed):
    low, high = _deployment(tmp_path, 0.30), _deployment(tmp_path, 0.50)
    assert low.plan.predicted.accuracy < high.plan.predicted.accuracy
    assert low.plan.cost.total < high.plan.cost.total
    assert low.plan.variants != high.plan.variants
    write_scene(tmp_path / "scene", SceneConfig(cameras=4, seconds=8, seed=seed))
    scenario = open_dataset(tmp_path / "scene").scenarios[0]
    measured = {}
    for name, dep in (("low", low), ("high", high)):
        result = build_result(run_local(dep, scenario, speed=0), scenario, dep.plan)
        measured[name] = result.tracking.idf1
        print(f"\n{name} target: plan {dep.plan.variants['detect']}, {dep.plan.cost.total:.4f} $/h, predicted "
              f"accuracy {dep.plan.predicted.accuracy:.3f}, measured IDF1 {result.tracking.idf1:.3f} "
              f"(IDP {result.tracking.idp:.3f}, IDR {result.tracking.idr:.3f})")
    assert measured["high"] > measured["low"]
