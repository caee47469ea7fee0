"""Stage 3: solve the model, handling every solver status, and read the values back."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, replace

from ortools.linear_solver import pywraplp

from jellybean.errors import SolverError
from jellybean.planner.model import Elastic, PlanningModel, Restriction
from jellybean.planner.problem import Problem

EPS = 1e-7
RELATIVE_GAP = 1e-7  # prove optimality to the cent on plans of hundreds of $/h


@dataclass(frozen=True)
class Solution:
    """Values of a solved model, detached from the solver."""

    status: str  # OPTIMAL | FEASIBLE
    objective: float
    best_bound: float | None
    seconds: float
    backend: str
    variants: dict[str, str]
    workers: dict[tuple[str, str, str], int]  # (pool, op, variant) -> workers
    loads: dict[tuple[str, str, str], float]  # (pool, op, variant) -> items/s
    flows: dict[tuple[str, tuple[str, str]], float]  # (edge, (from, to)) -> items/s
    kb: dict[tuple[str, tuple[str, str]], float]  # (edge, (from, to)) -> KB/s
    slack: dict[tuple[str, ...], float]
    consumed: dict[tuple[str, str], float]  # (edge, location) -> items/s taken in there

    @property
    def gap(self) -> float | None:
        if self.status == "OPTIMAL":
            return 0.0 if self.best_bound is None else max(0.0, _gap(self.objective, self.best_bound))
        if self.best_bound is None:
            return None
        return _gap(self.objective, self.best_bound)


def _gap(objective: float, bound: float) -> float:
    return abs(objective - bound) / max(abs(objective), 1e-9)


class _Status:
    NAMES = {
        pywraplp.Solver.OPTIMAL: "OPTIMAL",
        pywraplp.Solver.FEASIBLE: "FEASIBLE",
        pywraplp.Solver.INFEASIBLE: "INFEASIBLE",
        pywraplp.Solver.UNBOUNDED: "UNBOUNDED",
        pywraplp.Solver.ABNORMAL: "ABNORMAL",
        pywraplp.Solver.MODEL_INVALID: "MODEL_INVALID",
        pywraplp.Solver.NOT_SOLVED: "NOT_SOLVED",
    }


@contextlib.contextmanager
def _native_stdout_to_stderr():
    """Solver libraries print banners on the process's stdout (HiGHS does); keep stdout for --json."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def run(model: PlanningModel, time_limit: float | None = None) -> tuple[str, Solution | None]:
    """Solve ``model``; returns the status name and, where there is one, the solution."""
    solver = model.solver
    if time_limit is not None:
        solver.SetTimeLimit(int(max(time_limit, 0.01) * 1000))
    params = pywraplp.MPSolverParameters()
    params.SetDoubleParam(pywraplp.MPSolverParameters.RELATIVE_MIP_GAP, RELATIVE_GAP)
    with _native_stdout_to_stderr():
        status = solver.Solve(params)
    name = _Status.NAMES.get(status, str(status))
    if name not in ("OPTIMAL", "FEASIBLE"):
        return name, None
    v = model.v
    variants = {op: var for (op, var), z in v.z.items() if z.solution_value() > 0.5}
    workers = {k: round(n.solution_value()) for k, n in v.n.items() if n.solution_value() > 0.5}
    loads = {k: x.solution_value() for k, x in v.x.items() if x.solution_value() > EPS}
    flows: dict[tuple[str, tuple[str, str]], float] = {}
    kb: dict[tuple[str, tuple[str, str]], float] = {}
    for (edge, arc, k), f in v.flow.items():
        value = f.solution_value()
        if value > EPS:
            size = model.classes[edge][k][0]
            flows[edge, arc] = flows.get((edge, arc), 0.0) + value
            kb[edge, arc] = kb.get((edge, arc), 0.0) + value * size
    consumed: dict[tuple[str, str], float] = {}
    for e in model.problem.edges:
        for loc in model.problem.locations:
            value = _value(model.consumed(e, loc.name))
            if value > EPS:
                consumed[e.name, loc.name] = value
    try:
        bound = solver.Objective().BestBound()
        bound = bound if math.isfinite(bound) else None
    except Exception:  # LP-only backends have no bound; the objective is then exact
        bound = None
    return name, Solution(
        status=name,
        objective=solver.Objective().Value(),
        best_bound=bound,
        seconds=solver.wall_time() / 1000.0,
        backend=model.backend,
        variants=variants,
        workers=workers,
        loads=loads,
        flows=flows,
        kb=kb,
        slack={k: s.solution_value() for k, s in v.slack.items() if s.solution_value() > 1e-6},
        consumed=consumed,
    )


def _value(expr) -> float:
    """A constant, a variable or a linear expression, after a solve."""
    return float(expr) if isinstance(expr, (int, float)) else expr.solution_value()


WARM_START_SHARE = 0.25  # of a time limit, spent finding a good first plan
WARM_START_DEFAULT_S = 10.0  # without a time limit


def solve(
    problem: Problem,
    restriction: Restriction = Restriction(),
    time_limit: float | None = None,
    backend: str = "SCIP",
    warm_start: bool = True,
) -> Solution:
    """Build and solve; infeasible problems are explained, a time limit without a plan is an error."""
    start = time.monotonic()
    model = PlanningModel(problem, restriction, backend=backend)
    warm = None
    # The warm start re-solves one model with changed bounds and hints the full one; HiGHS through
    # pywraplp crashes the process on that (segfault, OR-Tools 9.15), so only SCIP gets it.
    if warm_start and restriction == Restriction() and backend == "SCIP":
        from jellybean.planner.search import VariantSearch

        budget = WARM_START_SHARE * time_limit if time_limit else WARM_START_DEFAULT_S
        warm = VariantSearch(problem, backend).run(budget, per_mip=max(0.5, budget / 8))
        if warm is not None:
            variables = model.solver.variables()
            model.solver.SetHint(variables, [warm.values.get(v.name(), 0.0) for v in variables])
    remaining = None if time_limit is None else max(time_limit - (time.monotonic() - start), 0.05)
    status, solution = run(model, remaining)
    seconds = time.monotonic() - start
    if warm is not None and (solution is None or warm.solution.objective < solution.objective - 1e-9):
        # The full model did not better the warm start in time: keep that plan, with the full model's
        # bound where it has one (the warm start's own status holds only for its fixed variants).
        bound = solution.best_bound if solution is not None else warm.bound
        solution = replace(warm.solution, status="FEASIBLE", best_bound=bound)
    if solution is not None:
        solution = replace(solution, seconds=seconds)
        if solution.status == "FEASIBLE" and solution.gap is not None and solution.gap <= RELATIVE_GAP:
            solution = replace(solution, status="OPTIMAL")
        return solution
    if status == "INFEASIBLE":
        from jellybean.planner.diagnose import explain_infeasible

        raise explain_infeasible(problem, restriction, backend=backend)
    if status not in ("INFEASIBLE", "UNBOUNDED", "MODEL_INVALID", "ABNORMAL") and time_limit is not None:
        # NOT_SOLVED, or a backend's own code (HiGHS answers 99 when its time limit hits).
        raise SolverError(
            f"the solver found no feasible plan within the time limit of {time_limit:g} s; "
            "raise --time-limit (or simplify the infrastructure)"
        )
    raise SolverError(f"the solver stopped with status {status}; rerun with --debug and report the inputs")


def elastic_solve(
    problem: Problem, restriction: Restriction, families: frozenset[str], backend: str = "SCIP"
) -> Solution | None:
    """Solve with the named constraint families made elastic; None if even that is infeasible."""
    model = PlanningModel(problem, restriction, elastic=Elastic(families=families), backend=backend)
    _, solution = run(model, time_limit=60)
    return solution
