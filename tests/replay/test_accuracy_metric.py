"""The zoo names what its accuracy figures measure; the plan carries the name, and the replay report
sets the plan's accuracy beside the measured IDF1 only when that name is IDF1 (issue 12, item 4)."""

from __future__ import annotations

from pathlib import Path

import yaml

from jellybean.planner.build import build_problem, load_inputs
from jellybean.planner.strategies import make_plan
from jellybean.replay.cityflow import Scenario
from jellybean.replay.outcome import build_result
from tests.replay.test_report_outcome import run_data

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples/aicity"


def _plan_with_metric(tmp_path: Path, metric: str | None):
    zoo = yaml.safe_load((EXAMPLE / "zoo.yaml").read_text())
    zoo.pop("accuracy_metric", None)
    if metric is not None:
        zoo["accuracy_metric"] = metric
    (tmp_path / "zoo.yaml").write_text(yaml.safe_dump(zoo))
    inputs = load_inputs(EXAMPLE / "workflow.yaml", tmp_path / "zoo.yaml", EXAMPLE / "infrastructure.yaml")
    return make_plan(build_problem(inputs), "optimal", time_limit=30, inputs=inputs.paths)


def test_the_plan_carries_the_zoos_accuracy_metric(tmp_path):
    assert _plan_with_metric(tmp_path, "IDF1").predicted.accuracy_metric == "IDF1"
    assert _plan_with_metric(tmp_path, None).predicted.accuracy_metric is None


def test_the_shipped_example_names_its_metric_and_it_is_not_idf1():
    zoo = yaml.safe_load((EXAMPLE / "zoo.yaml").read_text())
    assert zoo["accuracy_metric"] and "idf1" not in zoo["accuracy_metric"].lower()


def test_replay_reads_the_metric_from_the_plan(tmp_path):
    scenario = Scenario("train", "S01", ())
    idf1 = build_result(run_data(), scenario, _plan_with_metric(tmp_path, "IDF1"), evaluate=False)
    assert idf1.plan_accuracy_metric == "IDF1"
    other = build_result(run_data(), scenario, _plan_with_metric(tmp_path, "AP x mAP"), evaluate=False)
    assert other.plan_accuracy_metric == "AP x mAP"
