"""Branch on the variant choice: one small MIP per combination, bounded by its LP, cut off by the best.

With one variant per operator fixed, the rest of the model (worker counts, loads and routes) has a
tight relaxation and solves in a fraction of a second; with the variants free, the relaxation
blends them and branch-and-bound has to undo that. The combinations that meet the accuracy target
are few on real workflows (a few operators with a few variants each), so: bound every combination
by its LP, solve their MIPs cheapest bound first with the best plan so far as a cutoff, and stop
when the next bound is no better than that plan. Every combination is either solved, cut off, or
bounded, so the answer is proven optimal, or its gap is the least bound left open.
"""

from __future__ import annotations

import itertools
import math
import time

from jellybean.planner.highs import HighsModel, Progress, ProgressFn, Result
from jellybean.planner.model import PlanningModel

MAX_COMBINATIONS = 400  # beyond this, one LP per combination costs more than the full model saves

Choice = tuple[tuple[str, str], ...]  # ((operator, variant), ...) in operator order


def combinations(model: PlanningModel, limit: int = MAX_COMBINATIONS) -> list[Choice] | None:
    """The variant choices the model allows that meet the accuracy target; None past ``limit``."""
    p = model.problem
    allowed = [[var for var in op.variants if model.v.z[op.name, var].ub() > 0.5] for op in p.operators]
    if math.prod(len(a) for a in allowed) > 50 * limit:
        return None  # too many to even filter quickly
    acc = p.accuracy
    out: list[Choice] = []
    for pick in itertools.product(*allowed):
        choice = tuple(zip((op.name for op in p.operators), pick))
        if acc.target is not None and acc.defined and not model.elastic.relaxes("accuracy"):
            value = acc.of(dict(choice))
            if value is None or value < acc.target - 1e-12:
                continue
        out.append(choice)
        if len(out) > limit:
            return None
    return out


class VariantDecomposition:
    def __init__(self, model: PlanningModel, highs: HighsModel, choices: list[Choice], relative_gap: float):
        self.model, self.highs, self.choices = model, highs, choices
        self.gap = relative_gap
        self.z_columns = {key: z.index() for key, z in model.v.z.items()}
        self.lp_bound: dict[Choice, float] = {}

    def _fix(self, choice: Choice) -> None:
        chosen = set(choice)
        cols = list(self.z_columns.values())
        on = [1.0 if key in chosen else 0.0 for key in self.z_columns]
        self.highs.set_bounds(cols, on, on)

    def _bound_each(self, deadline: float, on_progress: ProgressFn | None, origin: float,
                    incumbent: float | None) -> None:
        self.highs.relax(True)
        for i, choice in enumerate(self.choices):
            if time.monotonic() >= deadline:
                break
            self._fix(choice)
            result = self.highs.solve(deadline - time.monotonic())
            if result.status == "OPTIMAL":
                self.lp_bound[choice] = result.objective
            elif result.status == "INFEASIBLE":
                self.lp_bound[choice] = math.inf
            if on_progress is not None:
                # Until every choice has its bound, the least one is not a bound on the whole space.
                least = (min((self.lp_bound.get(c, 0.0) for c in self.choices), default=math.inf)
                         if i + 1 == len(self.choices) else None)
                on_progress(Progress(incumbent, least if least is not None and math.isfinite(least) else None,
                                     time.monotonic() - origin, f"bounding variant choices {i + 1}/{len(self.choices)}"))
        self.highs.relax(False)

    def run(self, time_limit: float | None, on_progress: ProgressFn | None = None, first: Result | None = None) -> Result:
        """``first``: a plan in hand (the greedy one), the cutoff until a combination beats it."""
        origin = time.monotonic()
        deadline = origin + (time_limit if time_limit is not None else math.inf)
        self._bound_each(deadline, on_progress, origin, first.objective if first is not None else None)
        # A combination left without a bound (time ran out) stays open at zero: plans cost no less.
        open_bound = {c: self.lp_bound.get(c, 0.0) for c in self.choices}
        order = sorted((b, i) for i, b in enumerate(open_bound.values()) if b < math.inf)
        best: Result | None = first
        started = time.perf_counter()
        for rank, (bound, i) in enumerate(order):
            choice = self.choices[i]
            incumbent = best.objective if best is not None else math.inf
            if bound >= incumbent - self.gap * abs(incumbent):
                break  # this and every later combination cannot beat the plan in hand
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._fix(choice)
            step = f"solving variant choice {rank + 1}/{len(order)}"

            def progress(event: Progress) -> None:
                if on_progress is not None:
                    on_progress(self._overall(event, best, open_bound, choice, origin))

            result = self.highs.solve(left, cutoff=incumbent if best is not None else None,
                                      on_progress=progress if on_progress else None, stage=step, clock_start=origin)
            if result.values is not None and (best is None or result.objective < best.objective):
                best = result
            if result.status in ("OPTIMAL", "INFEASIBLE", "CUTOFF"):
                open_bound[choice] = math.inf
            elif result.bound is not None:
                open_bound[choice] = max(open_bound[choice], result.bound)
        self.highs.restore_bounds(list(self.z_columns.values()))
        seconds = time.perf_counter() - started
        if best is None:
            status = "INFEASIBLE" if all(b == math.inf for b in open_bound.values()) else "NOT_SOLVED"
            return Result(status, None, None, None, seconds)
        least_open = min(open_bound.values(), default=math.inf)
        bound = min(best.objective, least_open)
        solved = least_open >= best.objective - self.gap * abs(best.objective)
        return Result("OPTIMAL" if solved else "FEASIBLE", best.objective, bound, best.values, seconds)

    def _overall(self, event: Progress, best: Result | None, open_bound: dict[Choice, float], choice: Choice,
                 origin: float) -> Progress:
        """The whole search's incumbent and bound, while one combination's MIP runs."""
        incumbents = [x for x in (event.incumbent, best.objective if best else None) if x is not None]
        others = [b for c, b in open_bound.items() if c != choice]
        here = event.bound if event.bound is not None else open_bound[choice]
        bound = min([here, *others])
        incumbent = min(incumbents) if incumbents else None
        if incumbent is not None:
            bound = min(bound, incumbent)
        return Progress(incumbent, bound if math.isfinite(bound) else None, time.monotonic() - origin, event.stage)
