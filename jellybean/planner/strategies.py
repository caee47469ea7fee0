"""One entry point for every strategy: the optimal model and the baselines."""

from __future__ import annotations

import time
from typing import Literal

from jellybean.errors import InfeasibleError, JellyBeanError, SolverError
from jellybean.planner.baselines import greedy_restriction, tier_restriction
from jellybean.planner.extract import extract_plan
from jellybean.planner.highs import ProgressFn
from jellybean.planner.model import Restriction
from jellybean.planner.problem import Problem
from jellybean.planner.scale import scale_parts
from jellybean.planner.solution import relative_gap
from jellybean.planner.solve import solve
from jellybean.spec.plan import Plan

Strategy = Literal["optimal", "greedy", "all-cloud", "all-edge"]
STRATEGIES: tuple[str, ...] = ("optimal", "greedy", "all-cloud", "all-edge")


def restriction_for(problem: Problem, strategy: str) -> Restriction:
    if strategy == "optimal":
        return Restriction()
    if strategy == "greedy":
        return greedy_restriction(problem)
    if strategy == "all-cloud":
        return tier_restriction(problem, "cloud")
    if strategy == "all-edge":
        return tier_restriction(problem, "edge")
    raise JellyBeanError(f"unknown strategy '{strategy}'; use one of: {', '.join(STRATEGIES)}")


def make_plan(
    problem: Problem,
    strategy: str = "optimal",
    time_limit: float | None = None,
    backend: str = "HIGHS",
    inputs: dict[str, str] | None = None,
    on_progress: ProgressFn | None = None,
    mix: bool | None = False,
) -> Plan:
    """``mix``: let the optimal strategy run several variants of an operator (solve.solve); the
    baselines never mix. Off by default: `deploy` re-plans through here and its runtime expects one
    variant per operator unless told otherwise."""
    parts = scale_parts(problem)
    if len(parts) == 1:
        return _plan_part(parts[0].problem, strategy, time_limit, backend, inputs, on_progress, mix)
    # One problem per output scale (scale.py): the cheapest plan, and a gap where a part stopped
    # at its time limit with a lower bound.
    started = time.monotonic()
    best, bounds, failed = None, [], None
    for i, part in enumerate(parts):
        # An equal share of what is left, so that a hard part cannot starve the others.
        left = None if time_limit is None else max((time_limit - (time.monotonic() - started)) / (len(parts) - i), 1.0)
        try:
            plan = _plan_part(part.problem, strategy, left, backend, inputs, on_progress, mix)
        except (InfeasibleError, SolverError) as exc:
            # No plan in this part: proven (infeasible), or not found in its time (its bound unknown).
            failed = failed or exc
            if isinstance(exc, SolverError):
                bounds.append(None)
            continue
        except JellyBeanError as exc:
            if strategy == "optimal":
                raise
            failed = failed or exc  # a baseline that cannot place this part's variants
            continue
        plan = plan.model_copy(update={"output_scale": {op: v for op, v in part.scales.items() if v != 1.0}})
        solver = plan.solver
        bounds.append(plan.cost.total if solver.status == "OPTIMAL" else solver.best_bound)
        if best is None or plan.cost.total < best.cost.total:
            best = plan
    if best is None:
        raise failed
    seconds = time.monotonic() - started
    solver = best.solver.model_copy(update={"seconds": seconds})
    if best.solver.status != "HEURISTIC":
        bound = None if any(b is None for b in bounds) else min(bounds)
        if bound is not None and bound >= best.cost.total - 1e-9 * max(1.0, abs(best.cost.total)):
            solver = solver.model_copy(update={"status": "OPTIMAL", "gap": 0.0, "best_bound": best.cost.total})
        else:
            gap = None if bound is None else relative_gap(best.cost.total, bound)
            solver = solver.model_copy(update={"status": "FEASIBLE", "gap": gap, "best_bound": bound})
    return best.model_copy(update={"solver": solver})


def _plan_part(problem: Problem, strategy: str, time_limit: float | None, backend: str,
               inputs: dict[str, str] | None, on_progress: ProgressFn | None, mix: bool | None) -> Plan:
    restriction = restriction_for(problem, strategy)
    try:
        solution = solve(problem, restriction, time_limit=time_limit, backend=backend, on_progress=on_progress,
                         mix=mix if strategy == "optimal" else False)
    except JellyBeanError as exc:
        if strategy == "optimal":
            raise
        raise type(exc)(f"strategy {strategy}: {exc}") from None
    plan = extract_plan(problem, solution, strategy, inputs)
    if strategy == "greedy":
        # Variants and worker counts are the heuristic's; the solver only routed the items.
        plan = plan.model_copy(update={"solver": plan.solver.model_copy(update={"status": "HEURISTIC", "gap": None})})
    return plan
