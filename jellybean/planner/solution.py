"""A built model solved once and read back: the Solution, detached from the solver.

The lower layer of stage 3: `solve.py` (the strategy: warm starts, decomposition, diagnosis) and
`diagnose.py`, `search.py` build on it and it on none of them."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from ortools.linear_solver import pywraplp

from jellybean.planner.highs import HighsModel, ProgressFn, Result, quiet_stdout
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
    # A mixed plan: share of the items on each variant combination (in operator order); else empty.
    paths: dict[tuple[str, ...], float] = field(default_factory=dict)
    # Where mixing was considered: the best one-variant plan's $/h and variants (None: none exists),
    # and a note when mixing was skipped.
    one_variant_cost: float | None = None
    one_variant_variants: dict[str, str] = field(default_factory=dict)
    mix_considered: bool = False
    mix_note: str | None = None

    @property
    def gap(self) -> float | None:
        if self.status == "OPTIMAL":
            return 0.0 if self.best_bound is None else max(0.0, relative_gap(self.objective, self.best_bound))
        if self.best_bound is None:
            return None
        return relative_gap(self.objective, self.best_bound)


def relative_gap(objective: float, bound: float) -> float:
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


def run(model: PlanningModel, time_limit: float | None = None,
        on_progress: ProgressFn | None = None) -> tuple[str, Solution | None]:
    """Solve ``model``; returns the status name and, where there is one, the solution."""
    if model.backend == "HIGHS":
        highs = HighsModel(model.solver, RELATIVE_GAP)
        result = highs.solve(time_limit, on_progress=on_progress)
        if result.values is None:
            return result.status, None
        return result.status, read_solution(model, result)
    solver = model.solver
    if time_limit is not None:
        solver.SetTimeLimit(int(max(time_limit, 0.01) * 1000))
    params = pywraplp.MPSolverParameters()
    params.SetDoubleParam(pywraplp.MPSolverParameters.RELATIVE_MIP_GAP, RELATIVE_GAP)
    with quiet_stdout():
        status = solver.Solve(params)
    name = _Status.NAMES.get(status, str(status))
    if name not in ("OPTIMAL", "FEASIBLE"):
        return name, None
    try:
        bound = solver.Objective().BestBound()
        bound = bound if math.isfinite(bound) else None
    except Exception:  # LP-only backends have no bound; the objective is then exact
        bound = None
    values = np.array([v.solution_value() for v in solver.variables()])
    result = Result(name, solver.Objective().Value(), bound, values, solver.wall_time() / 1000.0)
    return name, read_solution(model, result)


def read_solution(model: PlanningModel, result: Result) -> Solution:
    """The plan in a solved model's values: variants, workers, loads and flows over the arcs."""
    v, values = model.v, result.values

    def value(expr) -> float:
        if isinstance(expr, (int, float)):
            return float(expr)
        if isinstance(expr, pywraplp.Variable):
            return float(values[expr.index()])
        coeffs = expr.GetCoeffs()
        return sum(c * (float(values[k.index()]) if isinstance(k, pywraplp.Variable) else 1.0)
                   for k, c in coeffs.items())

    paths: dict[tuple[str, ...], float] = {}
    if model.mix:
        paths = {path: value(c) for i, (path, _) in enumerate(model.paths) if value(c := v.path[i]) > EPS}
        # Each operator's variant is the one with the largest share of its items.
        share: dict[tuple[str, str], float] = defaultdict(float)
        for path, c in paths.items():
            for op, var in zip((o.name for o in model.problem.operators), path):
                share[op, var] += c
        variants = {op.name: max((var for var in op.variants if (op.name, var) in share),
                                 key=lambda var: share[op.name, var])
                    for op in model.problem.operators if any(o == op.name for o, _ in share)}
        if len(paths) == 1:
            paths = {}  # one path: a one-variant plan
    else:
        variants = {op: var for (op, var), z in v.z.items() if value(z) > 0.5}
    workers = {}
    for pool, op, var, w in model.worker_columns():
        count = round(value(w))
        var = var or variants.get(op)
        if count > 0 and var is not None:
            workers[pool, op, var] = count
    loads = {k: value(x) for k, x in v.x.items() if value(x) > EPS}
    flows: dict[tuple[str, tuple[str, str]], float] = defaultdict(float)
    kb: dict[tuple[str, tuple[str, str]], float] = defaultdict(float)
    edges = {e.name: e for e in model.problem.edges}
    at_hub: dict[tuple[str, str, int], tuple[list, list]] = defaultdict(lambda: ([], []))
    for (edge, route, k), f in v.flow.items():
        items = value(f)
        if items <= EPS:
            continue
        e = edges[edge]
        if route[1] in model.hubs:
            at_hub[edge, route[1], k][0].extend(_members(model, e, route[0], items, value, sending=True))
            continue
        if route[0] in model.hubs:
            at_hub[edge, route[0], k][1].extend(_members(model, e, route[1], items, value, sending=False))
            continue
        pairs = _pair(_members(model, e, route[0], items, value, sending=True),
                      _members(model, e, route[1], items, value, sending=False))
        for arc, share in pairs:
            flows[edge, arc] += share
            kb[edge, arc] += share * model.classes[edge][k][0]
    for (edge, _, k), (supply, demand) in at_hub.items():
        for arc, share in _pair(supply, demand):
            flows[edge, arc] += share
            kb[edge, arc] += share * model.classes[edge][k][0]
    consumed: dict[tuple[str, str], float] = {}
    for e in model.problem.edges:
        for loc in model.problem.locations:
            amount = value(model.consumed(e, loc.name))
            if amount > EPS:
                consumed[e.name, loc.name] = amount
    return Solution(
        status=result.status,
        objective=result.objective,
        best_bound=result.bound,
        seconds=result.seconds,
        backend=model.backend,
        variants=variants,
        workers=workers,
        loads=loads,
        flows=dict(flows),
        kb=dict(kb),
        slack={k: value(s) for k, s in v.slack.items() if value(s) > 1e-6},
        consumed=consumed,
        paths=paths,
    )


def _members(model: PlanningModel, e, group: str, items: float, value, sending: bool) -> list[list]:
    """A group's flow split over its members, each by its share of what the group sends or takes in.

    Shares of the whole, not of this route: every member then sends (takes) exactly what it
    produces (consumes) over all of its group's routes together.
    """
    members = model.senders[group] if sending else model.receivers[group]
    if len(members) == 1:
        return [[members[0], items]]
    amounts = [value(model.produced(e, m) if sending else model.consumed(e, m)) for m in members]
    total = sum(amounts)
    return [[m, items * q / total] for m, q in zip(members, amounts) if q > EPS] if total > EPS else []


def _pair(supply: list[list], demand: list[list]):
    """Pair senders with receivers by the north-west corner rule: at most |supply| + |demand| - 1
    arcs per route, not their product."""
    i = j = 0
    while i < len(supply) and j < len(demand):
        amount = min(supply[i][1], demand[j][1])
        if amount > EPS:
            yield (supply[i][0], demand[j][0]), amount
        supply[i][1] -= amount
        demand[j][1] -= amount
        if supply[i][1] <= EPS:
            i += 1
        else:
            j += 1


def elastic_solve(
    problem: Problem, restriction: Restriction, families: frozenset[str], backend: str = "HIGHS"
) -> Solution | None:
    """Solve with the named constraint families made elastic; None if even that is infeasible."""
    model = PlanningModel(problem, restriction, elastic=Elastic(families=families), backend=backend)
    _, solution = run(model, time_limit=60)
    return solution
