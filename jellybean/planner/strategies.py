"""One entry point for every strategy: the optimal model and the baselines."""

from __future__ import annotations

from typing import Literal

from jellybean.errors import JellyBeanError
from jellybean.planner.baselines import greedy_restriction, tier_restriction
from jellybean.planner.extract import extract_plan
from jellybean.planner.highs import ProgressFn
from jellybean.planner.model import Restriction
from jellybean.planner.problem import Problem
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
