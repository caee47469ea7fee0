"""Stage 3: solve the model, handling every solver status: a greedy start, variant decomposition
(HiGHS) or a variant search (SCIP), and an explanation when there is no plan."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np

from jellybean.errors import InfeasibleError, JellyBeanError, NotSupportedError, SolverError
from jellybean.planner.decompose import VariantDecomposition, combinations
from jellybean.planner.baselines import greedy_restriction
from jellybean.planner.diagnose import explain_infeasible
from jellybean.planner.highs import HighsModel, Progress, ProgressFn, Result
from jellybean.planner.mix import mix_cutoff
from jellybean.planner.model import PlanningModel, Restriction
from jellybean.planner.problem import Problem
from jellybean.planner.search import VariantSearch
from jellybean.planner.solution import RELATIVE_GAP, Solution, read_solution, run

log = logging.getLogger(__name__)



WARM_START_SHARE = 0.25  # of a time limit, spent finding a good first plan (SCIP)
WARM_START_DEFAULT_S = 10.0  # without a time limit
# Share of the full model's search HiGHS spends on primal heuristics (its default is 0.05). On the
# full model a good plan comes late and the proof waits for it: benchmarks/planner_scale.py, 60 s
# MIPs, 0.3 took 300 workers (seed 0) from an 18.1 % to a 12.8 % gap and 100 workers' proofs from
# 6.6/53.6/24.1 s to 7.7/40.7/18.1 s. The decomposition's small MIPs keep the default.
FULL_MODEL_HEURISTIC_EFFORT = 0.3


def solve(
    problem: Problem,
    restriction: Restriction = Restriction(),
    time_limit: float | None = None,
    backend: str = "HIGHS",
    warm_start: bool = True,
    on_progress: ProgressFn | None = None,
    decompose: bool | None = None,
    mix: bool | None = False,
) -> Solution:
    """Build and solve; infeasible problems are explained, a time limit without a plan is an error.

    ``decompose``: branch on variant combinations (decompose.py) with HiGHS; by default whenever
    they are few enough, and never when a restriction already fixes the variants.
    ``mix``: also solve the mixed-variant model (mix.py) and keep its plan only where it is cheaper
    than the one-variant plan by more than the tolerance; None: mix where the combinations are few
    enough, silently skipping it otherwise; True: refuse too many combinations.
    """
    if mix is False or restriction != Restriction():
        return _solve_one_variant(problem, restriction, time_limit, backend, warm_start, on_progress, decompose)
    start = time.monotonic()
    try:
        mixed = PlanningModel(problem, restriction, backend=backend, mix=True)
    except NotSupportedError as exc:
        if mix:
            raise
        one = _solve_one_variant(problem, restriction, time_limit, backend, warm_start, on_progress, decompose)
        return replace(one, mix_note=f"mixed variants not considered: {exc}".replace("; plan without --mix", ";"))
    try:
        one = _solve_one_variant(problem, restriction, time_limit, backend, warm_start, on_progress, decompose)
    except InfeasibleError as infeasible:
        one, why_not = None, infeasible
    remaining = None if time_limit is None else max(time_limit - (time.monotonic() - start), 0.05)
    cutoff = mix_cutoff(one.objective) if one is not None else None
    if on_progress is not None:
        on_progress(Progress(one.objective if one else None, None, time.monotonic() - start, "mixing variants"))
    status, found = _solve_mixed(mixed, remaining, cutoff)
    seconds = time.monotonic() - start
    if one is None:
        if found is None:
            raise why_not
        return replace(found, seconds=seconds, mix_considered=True)
    info = dict(one_variant_cost=one.objective, one_variant_variants=dict(one.variants), mix_considered=True)
    if found is not None and found.paths and found.objective < cutoff:
        return replace(found, seconds=seconds, **info)
    # The one-variant plan stays; the mixed model's bound (a relaxation of the one-variant model's)
    # proves it optimal among mixed plans too unless the mixed solve stopped at its time limit.
    if status in ("OPTIMAL", "INFEASIBLE", "CUTOFF") or found is not None:
        return replace(one, seconds=seconds, **info)
    return replace(one, seconds=seconds, status="FEASIBLE", mix_note="the mixed-variant solve ran out of time",
                   **info)


def _solve_mixed(model: PlanningModel, time_limit: float | None, cutoff: float | None) -> tuple[str, Solution | None]:
    """The mixed model, cut off at the one-variant plan: only cheaper mixes are of interest.

    The one-variant plan is the warm start in the form of that cutoff; as a hint it would add
    nothing, since it lies above the cutoff.
    """
    if model.backend != "HIGHS":
        return run(model, time_limit)
    result = HighsModel(model.solver, RELATIVE_GAP).solve(time_limit, cutoff=cutoff)
    if result.values is None:
        return result.status, None
    solution = read_solution(model, result)
    if solution.status == "FEASIBLE" and solution.gap is not None and solution.gap <= RELATIVE_GAP:
        solution = replace(solution, status="OPTIMAL")
    return result.status, solution


def _solve_one_variant(problem: Problem, restriction: Restriction, time_limit: float | None, backend: str,
                       warm_start: bool, on_progress: ProgressFn | None, decompose: bool | None) -> Solution:
    start = time.monotonic()
    model = PlanningModel(problem, restriction, backend=backend)
    if log.isEnabledFor(logging.DEBUG):
        full = PlanningModel(problem, restriction, backend=backend, reduce=False)
        log.debug("model without route aggregation: %s", _size_text(full.size()))
        log.debug("model solved: %s", _size_text(model.size()))
    if backend == "HIGHS":
        status, solution = _solve_highs(model, time_limit, on_progress, decompose)
    else:
        status, solution = _solve_pywraplp(model, time_limit, warm_start)
    seconds = time.monotonic() - start
    if solution is not None:
        solution = replace(solution, seconds=seconds)
        if solution.status == "FEASIBLE" and solution.gap is not None and solution.gap <= RELATIVE_GAP:
            solution = replace(solution, status="OPTIMAL")
        return solution
    if status == "INFEASIBLE":
        raise explain_infeasible(problem, restriction, backend=backend)
    if status not in ("INFEASIBLE", "UNBOUNDED", "MODEL_INVALID", "ABNORMAL") and time_limit is not None:
        # NOT_SOLVED, or a backend's own code (HiGHS answers 99 when its time limit hits).
        raise SolverError(
            f"the solver found no feasible plan within the time limit of {time_limit:g} s; "
            "raise --time-limit (or simplify the infrastructure)"
        )
    raise SolverError(f"the solver stopped with status {status}; rerun with --debug and report the inputs")


def _size_text(size: tuple[int, int, int, int]) -> str:
    return "{} rows / {} columns / {} integers / {} nonzeros".format(*size)


def _solve_highs(model: PlanningModel, time_limit: float | None, on_progress: ProgressFn | None,
                 decompose: bool | None) -> tuple[str, Solution | None]:
    choices = None
    if decompose is not False and model.restriction.variants is None:
        choices = combinations(model)
        if decompose and choices is None:
            choices = combinations(model, limit=10**6)
    split = choices is not None and len(choices) > 1
    if split:
        # With the variants fixed the covers are knapsack rows over whole workers; in the full
        # model they only slowed the search (planner_scale, 200 workers: gaps 0/0.9/1.2 % -> 5.8/3.5/1.4 %).
        model.add_covers()
    highs = HighsModel(model.solver, RELATIVE_GAP, heuristic_effort=None if split else FULL_MODEL_HEURISTIC_EFFORT)
    first = greedy_start(model) if model.restriction == Restriction() else None
    if first is not None:
        highs.hint(first.values)
        if on_progress is not None:
            on_progress(Progress(first.objective, None, 0.0, "greedy plan"))
    if split:
        log.debug("decomposing over %d variant combinations", len(choices))
        result = VariantDecomposition(model, highs, choices, RELATIVE_GAP).run(time_limit, on_progress, first)
    else:
        result = highs.solve(time_limit, on_progress=on_progress)
        if first is not None and (result.values is None or result.objective > first.objective):
            result = Result("FEASIBLE", first.objective, result.bound, first.values, result.seconds)
    if result.values is None:
        return result.status, None
    return result.status, read_solution(model, result)


def greedy_start(model: PlanningModel) -> Result | None:
    """The greedy baseline's plan in ``model``'s columns: a plan in hand before the search starts.

    With it, a time limit never ends without a plan where the heuristic has one, and the search
    prunes against it from the first node.
    """
    try:
        restriction = greedy_restriction(model.problem)
    except JellyBeanError:
        return None
    fixed = PlanningModel(model.problem, restriction, backend="HIGHS", reduce=model.reduce)
    result = HighsModel(fixed.solver, RELATIVE_GAP).solve()
    if result.values is None:
        return None
    by_name = {var.name(): result.values[var.index()] for var in fixed.solver.variables()}
    values = np.array([by_name.get(var.name(), 0.0) for var in model.solver.variables()])
    return Result("FEASIBLE", result.objective, None, values, result.seconds)


def _solve_pywraplp(model: PlanningModel, time_limit: float | None, warm_start: bool) -> tuple[str, Solution | None]:
    """SCIP (or another OR-Tools backend), with a neighbourhood search over variants as warm start."""
    start = time.monotonic()
    problem, backend = model.problem, model.backend
    warm = None
    if warm_start and model.restriction == Restriction() and backend == "SCIP":
        budget = WARM_START_SHARE * time_limit if time_limit else WARM_START_DEFAULT_S
        warm = VariantSearch(problem, backend).run(budget, per_mip=max(0.5, budget / 8))
        if warm is not None:
            variables = model.solver.variables()
            model.solver.SetHint(variables, [warm.values.get(v.name(), 0.0) for v in variables])
    remaining = None if time_limit is None else max(time_limit - (time.monotonic() - start), 0.05)
    status, solution = run(model, remaining)
    if warm is not None and (solution is None or warm.solution.objective < solution.objective - 1e-9):
        # The full model did not better the warm start in time: keep that plan, with the full model's
        # bound where it has one (the warm start's own status holds only for its fixed variants).
        bound = solution.best_bound if solution is not None else warm.bound
        solution = replace(warm.solution, status="FEASIBLE", best_bound=bound)
    return status, solution
