"""Warm start for the optimal model: a neighbourhood search over the variant choice.

The branch-and-bound of the full model finds feasible plans slowly on large infrastructures:
its relaxation runs a different variant at every site. With the variants fixed, the rest of the
model (worker counts and routes) has a tight relaxation and solves quickly. So we fix variants,
starting from the greedy baseline's, move one or two operators to another variant at a time,
rank the moves by the relaxation with those variants fixed, solve the best few as short MIPs,
and hand the best plan found to the full model as a hint. The full model still proves (or
bounds) optimality; the search only makes its first incumbent a good one.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

from jellybean.errors import JellyBeanError
from jellybean.planner.baselines import greedy_variants
from jellybean.planner.model import PlanningModel
from jellybean.planner.problem import Problem
from jellybean.planner.solution import Solution, run

Assignment = tuple[tuple[str, str], ...]  # ((operator, variant), ...) in operator order


@dataclass(frozen=True)
class WarmStart:
    solution: Solution
    values: dict[str, float]  # variable name -> value, for the full model's hint
    evaluated: int  # variant choices solved as MIPs
    bound: float | None  # the full model's root relaxation: a valid lower bound


class VariantSearch:
    def __init__(self, problem: Problem, backend: str = "SCIP"):
        self.problem = problem
        self.mip = PlanningModel(problem, backend=backend)
        self.lp = PlanningModel(problem, backend="GLOP")  # GLOP relaxes the integer variables
        self.lp_cache: dict[Assignment, float] = {}
        self.mip_cache: dict[Assignment, Solution | None] = {}

    # -- evaluating one variant choice ------------------------------------------------------------
    def _fix(self, model: PlanningModel, choice: dict[str, str]) -> None:
        for (op, var), z in model.v.z.items():
            on = 1 if choice[op] == var else 0
            z.SetBounds(on, on)

    def _release(self, model: PlanningModel) -> None:
        for z in model.v.z.values():
            z.SetBounds(0, 1)

    def relaxation(self, choice: dict[str, str]) -> float:
        key = tuple(choice.items())
        if key not in self.lp_cache:
            self._fix(self.lp, choice)
            status = self.lp.solver.Solve()
            ok = status in (self.lp.solver.OPTIMAL, self.lp.solver.FEASIBLE)
            self.lp_cache[key] = self.lp.solver.Objective().Value() if ok else math.inf
        return self.lp_cache[key]

    def plan_for(self, choice: dict[str, str], seconds: float) -> tuple[Solution | None, dict[str, float]]:
        self._fix(self.mip, choice)
        _, solution = run(self.mip, time_limit=max(seconds, 0.05))
        values = {}
        if solution is not None:
            values = {v.name(): v.solution_value() for v in self.mip.solver.variables()}
        self.mip_cache[tuple(choice.items())] = solution
        return solution, values

    # -- the search ---------------------------------------------------------------------------------
    def feasible(self, choice: dict[str, str]) -> bool:
        acc = self.problem.accuracy
        if acc.target is None or not acc.defined:
            return True
        value = acc.of(choice)
        return value is not None and value >= acc.target - 1e-12

    def neighbours(self, choice: dict[str, str], pairs: bool) -> list[dict[str, str]]:
        ops = self.problem.operators
        moves = [(o.name, v) for o in ops for v in o.variants if v != choice[o.name]]
        out = []
        for move in moves:
            out.append({**choice, move[0]: move[1]})
        if pairs:
            for (o1, v1), (o2, v2) in itertools.combinations(moves, 2):
                if o1 != o2:
                    out.append({**choice, o1: v1, o2: v2})
        return [c for c in out if self.feasible(c) and tuple(c.items()) not in self.mip_cache]

    def run(self, budget: float, per_mip: float) -> WarmStart | None:
        deadline = time.monotonic() + budget
        try:
            start = greedy_variants(self.problem)
        except JellyBeanError:
            return None
        best, best_values = self.plan_for(start, min(per_mip, budget))
        evaluated = 1
        if best is None:
            self._release(self.mip)
            return None
        pairs = False
        while time.monotonic() < deadline:
            current = dict(best.variants)
            ranked = []
            for c in self.neighbours(current, pairs):
                if time.monotonic() >= deadline:
                    break
                bound = self.relaxation(c)
                if bound < best.objective - 1e-9:
                    ranked.append((bound, tuple(c.items())))
            improved = False
            for _, key in sorted(ranked)[:4]:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                solution, values = self.plan_for(dict(key), min(per_mip, left))
                evaluated += 1
                if solution is not None and solution.objective < best.objective - 1e-9:
                    best, best_values, improved = solution, values, True
                    break
            if not improved:
                if pairs:
                    break
                pairs = True  # single moves are exhausted: trade accuracy between two operators
        self._release(self.mip)
        self._release(self.lp)
        status = self.lp.solver.Solve()
        bound = self.lp.solver.Objective().Value() if status == self.lp.solver.OPTIMAL else None
        return WarmStart(solution=best, values=best_values, evaluated=evaluated, bound=bound)
