"""Strided variants in the plan: what runs after a variant that passes on 1/stride of its work is
planned for that share (planner/scale.py), exactly as if the workflow's edge carried that ratio."""

from __future__ import annotations

from pathlib import Path

import pytest

from jellybean.errors import SpecError
from jellybean.planner.build import build_problem, check_references, load_inputs
from jellybean.planner.scale import scale_parts
from jellybean.planner.strategies import make_plan

try:
    from .example_specs import AICITY, aicity_specs, write_specs
except ImportError:  # run as a script
    from example_specs import AICITY, aicity_specs, write_specs



def _example(tmp_path: Path, *, detectors: tuple[str, ...], stride: object = None, ratio_scale: float = 1.0,
             target: float | None = None) -> dict[str, Path]:
    """examples/aicity with only ``detectors``, their stride set to ``stride`` (None: as shipped), and
    the detect -> reid ratio times ``ratio_scale``."""
    wf, zoo, infra = aicity_specs()
    for edge in wf["edges"]:
        if edge["from"] == "detect":
            edge["ratio"] = edge.get("ratio", 1.0) * ratio_scale
    if target is not None:
        wf["slo"]["accuracy"] = target
    for op in zoo["operators"]:
        if op["name"] == "detect":
            op["variants"] = [v for v in op["variants"] if v["name"] in detectors]
            if stride is not None:
                for v in op["variants"]:
                    v["params"] = {**v.get("params", {}), "stride": stride}
    return write_specs(tmp_path, wf, zoo, infra)


def _plan(paths):
    inputs = load_inputs(paths["workflow"], paths["zoo"], paths["infrastructure"])
    check_references(inputs)
    return make_plan(build_problem(inputs), "optimal", time_limit=60, inputs=inputs.paths)


def _load(plan, op):
    return sum(w.load for w in plan.workers if w.operator == op)


def test_a_stride_plans_what_follows_as_an_edge_of_that_ratio(tmp_path):
    strided = _plan(_example(tmp_path / "a", detectors=("det-w050-s2",), target=0.3))
    # The same detector without its stride, and half the crops per frame on the edge after it.
    halved = _plan(_example(tmp_path / "b", detectors=("det-w050-s2",), stride=1, ratio_scale=0.5, target=0.3))
    assert strided.cost.total == pytest.approx(halved.cost.total, rel=1e-6)
    for op in ("reid", "track", "associate"):
        assert _load(strided, op) == pytest.approx(_load(halved, op), rel=1e-6), op
    assert _load(strided, "reid") == pytest.approx(_load(strided, "detect") * 5.9 / 2, rel=1e-6)
    assert strided.solver.status == "OPTIMAL"


def test_the_planner_picks_the_cheapest_scale_and_proves_it(tmp_path):
    both = _plan(_example(tmp_path / "both", detectors=("det-w050", "det-w050-s2"), target=0.3))
    full = _plan(_example(tmp_path / "full", detectors=("det-w050",), target=0.3))
    strided = _plan(_example(tmp_path / "strided", detectors=("det-w050-s2",), target=0.3))
    assert both.cost.total == pytest.approx(min(full.cost.total, strided.cost.total), rel=1e-6)
    # Re-ID for half the crops makes the strided plan the cheaper one here.
    assert strided.cost.total < full.cost.total
    assert {w.variant for w in both.workers if w.operator == "detect"} == {"det-w050-s2"}
    assert both.solver.status == "OPTIMAL"


def test_parts_split_the_variants_by_scale_and_scale_every_rate_after():
    inputs = load_inputs(AICITY / "workflow.yaml", AICITY / "zoo.yaml", AICITY / "infrastructure.yaml")
    problem = build_problem(inputs)
    parts = scale_parts(problem)
    assert [p.scales for p in parts] == [{"detect": 1.0}, {"detect": 0.5}]
    full, half = (p.problem for p in parts)
    assert set(half.operator("detect").variants) == {"det-w050-s2", "det-w100-s2"}
    assert half.operator("detect").rate == problem.operator("detect").rate
    for op in ("reid", "track", "associate"):
        assert half.operator(op).rate == pytest.approx(problem.operator(op).rate / 2)
        assert full.operator(op).rate == problem.operator(op).rate
    assert {e.name: e.rate for e in half.edges}["camera->detect"] == problem.rate("camera")
    assert {e.name: e.rate for e in half.edges}["detect->reid"] == pytest.approx(problem.operator("reid").rate / 2)


@pytest.mark.parametrize("stride", [0, -2, 1.5, "two", True])
def test_a_bad_stride_is_refused_with_the_field_and_the_fix(tmp_path, stride):
    paths = _example(tmp_path, detectors=("det-w050",), stride=stride)
    with pytest.raises(SpecError) as err:
        load_inputs(paths["workflow"], paths["zoo"], paths["infrastructure"])
    text = str(err.value)
    assert "params.stride" in text and "whole number of frames" in text and str(paths["zoo"]) in text


def test_explain_says_what_a_stride_was_planned_for(tmp_path):
    from rich.console import Console

    from jellybean.planner.render import render_explain

    plan = _plan(_example(tmp_path, detectors=("det-w050", "det-w050-s2"), target=0.3))
    assert plan.output_scale == {"detect": 0.5}
    console = Console(width=200, record=True)
    render_explain(plan, console)
    text = console.export_text()
    assert "Strided variants" in text
    assert "detect runs det-w050-s2, which passes on 0.5 of its items' work (a stride of 2 frames)" in text
    assert "(reid, track, associate)" in text
