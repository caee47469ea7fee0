"""The exact reductions and the variant decomposition give the single full model's answer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from jellybean.errors import InfeasibleError
from jellybean.planner.decompose import combinations
from jellybean.planner.extract import extract_plan
from jellybean.planner.generate import random_problem, tiny_problem
from jellybean.planner.highs import Progress
from jellybean.planner.jellybean_format import load_jellybean_inputs
from jellybean.planner.model import PlanningModel
from jellybean.planner.solution import run
from jellybean.planner import solve as solve_module
from jellybean.planner.solve import solve

try:
    from .test_optimality import check_plan, close
except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
    from test_optimality import check_plan, close

VQA_DIR = Path(__file__).resolve().parents[2] / "examples/vqa/prototype_inputs"


def _both(problem):
    try:
        split = solve(problem, decompose=True)
    except InfeasibleError:
        with pytest.raises(InfeasibleError):
            solve(problem, decompose=False)
        return None, None
    whole = solve(problem, decompose=False)
    return split, whole


@pytest.mark.parametrize("seed", range(30))
def test_decomposed_equals_single_model_on_tiny_instances(seed: int) -> None:
    split, whole = _both(tiny_problem(seed))
    if split is None:
        return
    assert split.status == whole.status == "OPTIMAL"
    assert close(split.objective, whole.objective), (split.objective, whole.objective)


@pytest.mark.parametrize("seed,transit", [(1, False), (2, False), (3, True), (4, True)])
def test_decomposed_equals_single_model_on_small_random_instances(seed: int, transit: bool) -> None:
    problem = random_problem(seed, workers=16, operators=3, variants=3, transit=transit)
    assert 1 < len(combinations(PlanningModel(problem))) <= 27
    split, whole = _both(problem)
    assert split.status == whole.status == "OPTIMAL"
    assert close(split.objective, whole.objective), (split.objective, whole.objective)
    check_plan(problem, extract_plan(problem, split, "optimal"))


def _unlimited(problem):
    """The instance without bandwidth limits: routes then differ only in price, as in the prototype."""
    return dataclasses.replace(problem, links=tuple(dataclasses.replace(l, bandwidth_kbps=None) for l in problem.links))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_route_aggregation_is_exact_and_smaller(seed: int) -> None:
    problem = _unlimited(random_problem(seed, workers=24, operators=3, variants=2, transit=False))
    reduced, full = PlanningModel(problem), PlanningModel(problem, reduce=False)
    assert reduced.aggregated and not full.aggregated
    assert reduced.size()[1] <= full.size()[1]
    status_r, r = run(reduced)
    status_f, f = run(full)
    assert status_r == status_f == "OPTIMAL"
    assert close(r.objective, f.objective), (r.objective, f.objective)
    # The flows between groups split back over real arcs: the plan adds up from its own routes.
    check_plan(problem, extract_plan(problem, r, "optimal"))


def test_vqa_routes_aggregate() -> None:
    if not VQA_DIR.is_dir():
        pytest.skip(f"the shipped VQA inputs are not at {VQA_DIR}")
    problem = load_jellybean_inputs(VQA_DIR)
    reduced, full = PlanningModel(problem), PlanningModel(problem, reduce=False)
    assert reduced.aggregated
    assert len(reduced.route_price) < len(full.route_price)
    assert close(run(reduced)[1].objective, run(full)[1].objective)


@pytest.mark.parametrize("transit", [True, False])
def test_no_aggregation_with_transit_or_bandwidth_limits(transit: bool) -> None:
    problem = random_problem(1, workers=24, operators=3, variants=2, transit=transit)
    assert any(l.bandwidth_kbps is not None for l in problem.links)
    model = PlanningModel(problem)
    assert not model.aggregated
    assert all(len(members) == 1 for members in model.senders.values())


def test_progress_reports_plan_bound_and_gap() -> None:
    problem = random_problem(2, workers=40, operators=4, variants=3, transit=False)
    events: list[Progress] = []
    solution = solve(problem, on_progress=events.append)
    assert solution.status == "OPTIMAL"
    assert any(e.bound is not None for e in events)
    with_both = [e for e in events if e.incumbent is not None and e.bound is not None]
    assert with_both, "no progress event carried both a plan and a bound"
    for e in with_both:
        assert e.bound <= e.incumbent * (1 + 1e-6) + 1e-9
        assert e.gap is not None and e.gap >= 0
    assert min(e.incumbent for e in with_both) >= solution.objective * (1 - 1e-6)


def test_only_the_full_model_raises_the_heuristic_effort(monkeypatch: pytest.MonkeyPatch) -> None:
    efforts: list[float | None] = []
    original = solve_module.HighsModel.__init__

    def spy(self, solver, relative_gap=1e-7, heuristic_effort=None):  # noqa: ANN001
        efforts.append(heuristic_effort)
        original(self, solver, relative_gap, heuristic_effort)
        if heuristic_effort is not None:
            assert self.h.getOptionValue("mip_heuristic_effort")[1] == heuristic_effort

    monkeypatch.setattr(solve_module.HighsModel, "__init__", spy)
    problem = random_problem(2, workers=20, operators=3, variants=3, transit=False)
    assert solve(problem, decompose=False).status == "OPTIMAL"
    assert solve_module.FULL_MODEL_HEURISTIC_EFFORT in efforts
    efforts.clear()
    assert solve(problem, decompose=True).status == "OPTIMAL"
    assert efforts and solve_module.FULL_MODEL_HEURISTIC_EFFORT not in efforts


def test_highs_and_scip_agree() -> None:
    problem = random_problem(3, workers=20, operators=3, variants=3, transit=True)
    highs = solve(problem, backend="HIGHS")
    scip = solve(problem, backend="SCIP")
    assert highs.status == scip.status == "OPTIMAL"
    assert close(highs.objective, scip.objective), (highs.objective, scip.objective)


@pytest.mark.parametrize("seed", [1, 2])
def test_free_hubs_are_exact_on_prototype_instances(seed: int, tmp_path: Path) -> None:
    from jellybean.planner.prototype_instances import write_prototype_instance

    write_prototype_instance(tmp_path, seed, 16, tiers=3)
    problem = load_jellybean_inputs(tmp_path)
    reduced, full = PlanningModel(problem), PlanningModel(problem, reduce=False)
    assert reduced.hubs, "no clique of free routes found in a tiered instance"
    assert len(reduced.route_price) < len(full.route_price)
    status_r, r = run(reduced)
    status_f, f = run(full)
    assert status_r == status_f == "OPTIMAL"
    assert close(r.objective, f.objective), (r.objective, f.objective)
    check_plan(problem, extract_plan(problem, r, "optimal"))
