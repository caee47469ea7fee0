"""The runtime model: which variants, in what shares, on how many workers serve the demand now.

Loki's path formulation (Ahmad et al., HPDC 2024): c[p] is the share of the workflow's items that
take variant combination p, and end-to-end accuracy is Σ_p c[p]·acc[p], linear in the shares. The
placement is the plan's: an operator may use only the pools where the plan lets it run, so the
model has no routes and solves in milliseconds. Pools of one hardware kind and price that may run
the same operators are one slot; the decision is split back over them (exact: a slot's workers
are interchangeable in this model).

Two objectives, the two phases of a decision:
- ``cost``: every item served, accuracy ≥ the target, least $/h (hardware scaling);
- ``accuracy``: on the workers usable now, serve as many items as possible, then at the highest
  accuracy, never below the floor (accuracy scaling);
- ``lean``: serve as many items as possible at the least $/h, never below the floor (how many
  elastic workers serving the demand needs, before any is bought for accuracy alone).
"""

from __future__ import annotations

import itertools
import math
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ortools.linear_solver import pywraplp

from jellybean.errors import JellyBeanError
from jellybean.planner.highs import HighsModel
from jellybean.planner.problem import Problem

MAX_PATHS = 4096
EPS = 1e-9
# The accuracy phase is lexicographic: first the most items served, then, keeping that to within
# SERVED_SLACK, the highest accuracy, and a saving in $/h only breaks ties (a cent per hour weighs
# 1e-6 against accuracy, which is at most 1). A weighted sum would trade a percent of the items
# for a cheaper-to-serve but more accurate variant, which is exactly the overload to avoid.
SERVED_SLACK = 1e-6
COST_WEIGHT = 1e-4
Objective = Literal["cost", "accuracy", "lean"]


@dataclass(frozen=True)
class Slot:
    """Interchangeable workers: one hardware kind at one price, allowed the same operators."""

    name: str
    hardware: str
    price: float
    members: tuple[tuple[str, int], ...]  # (pool, workers it has)
    elastic: bool  # rented by the hour (the cloud): workers beyond those running must boot first

    @property
    def count(self) -> int:
        return sum(n for _, n in self.members)


@dataclass(frozen=True)
class RuntimeProblem:
    operators: tuple[str, ...]
    variants: Mapping[str, tuple[str, ...]]
    paths: tuple[tuple[str, ...], ...]  # one variant per operator, in `operators` order
    accuracy: Mapping[tuple[str, ...], float]
    rank: Mapping[tuple[str, str], float]  # (op, variant) -> its accuracy, for most-accurate-first
    capacity: Mapping[tuple[str, str, str], float]  # (slot, op, variant) -> items/s per worker
    base_rate: Mapping[str, float]  # items/s per operator at the planned load, at output scale 1
    slots: tuple[Slot, ...]
    target: float | None
    floor: float | None
    # (op, variant) -> its output scale where not 1 (a strided detector: 1/stride), and per operator
    # the operators upstream of it: the items reaching an operator on path p are its demand times
    # the product of p's scales upstream, linear in the shares c[p].
    scale: Mapping[tuple[str, str], float] = field(default_factory=dict)
    upstream: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def reach(self, op: str, path: tuple[str, ...]) -> float:
        """The share of ``op``'s demand that reaches it along ``path``."""
        value = 1.0
        if self.scale:
            for up in self.upstream.get(op, ()):
                value *= self.scale.get((up, path[self.operators.index(up)]), 1.0)
        return value

    def reach_of_shares(self, op: str, shares: Mapping[str, Mapping[str, float]]) -> float:
        """The same with each upstream operator splitting its items by ``shares`` on its own (as the
        agents route them)."""
        value = 1.0
        if self.scale:
            for up in self.upstream.get(op, ()):
                split = shares.get(up, {})
                total = sum(split.values())
                if total > 0:
                    value *= sum(q * self.scale.get((up, v), 1.0) for v, q in split.items()) / total
        return value

    @classmethod
    def from_problem(cls, problem: Problem, placement: Mapping[str, set[str]] | None = None,
                     floor: float | None = None, elastic_tiers: frozenset[str] = frozenset({"cloud"})) -> RuntimeProblem:
        """``placement[op]``: locations where ``op`` may run (None: wherever a pool can run it)."""
        ops = tuple(o.name for o in problem.operators)
        variants = {o.name: o.variants for o in problem.operators}
        combos = math.prod(len(v) for v in variants.values())
        if combos > MAX_PATHS:
            raise JellyBeanError(f"not supported: {combos} variant combinations for the runtime model (at most "
                                 f"{MAX_PATHS}); trim the zoo's variants")
        accuracy: dict[tuple[str, ...], float] = {}
        for combo in itertools.product(*(variants[o] for o in ops)):
            value = problem.accuracy.of(dict(zip(ops, combo))) if problem.accuracy.defined else 1.0
            if value is not None:
                accuracy[combo] = value
        if not accuracy:
            raise JellyBeanError("no variant combination has a defined accuracy; complete the zoo's accuracy table")
        rank: dict[tuple[str, str], float] = {}
        for j, op in enumerate(ops):
            for var in variants[op]:
                through = [a for p, a in accuracy.items() if p[j] == var]
                rank[op, var] = sum(through) / len(through) if through else 0.0
        tier_of = {loc.name: loc.tier_name for loc in problem.locations}
        groups: dict[tuple, list[tuple[str, int]]] = defaultdict(list)
        caps: dict[tuple, dict[tuple[str, str], float]] = {}
        for pool in problem.pools:
            allowed: dict[tuple[str, str], float] = {}
            for op in ops:
                if placement is not None and pool.location not in placement.get(op, ()):
                    continue
                for var in variants[op]:
                    cap = problem.capability(op, var, pool.hardware)
                    if cap is not None and cap.memory_mb <= pool.memory_mb and cap.capacity > 0:
                        allowed[op, var] = cap.capacity
            if not allowed or pool.count <= 0:
                continue
            key = (pool.hardware, pool.price, tier_of.get(pool.location) in elastic_tiers,
                   tuple(sorted(allowed.items())))
            groups[key].append((pool.name, pool.count))
            caps[key] = allowed
        slots, capacity = [], {}
        for i, (key, members) in enumerate(sorted(groups.items(), key=lambda kv: kv[1][0][0])):
            hardware, price, elastic, _ = key
            name = members[0][0] if len(members) == 1 else f"{hardware}#{i}"
            slots.append(Slot(name, hardware, price, tuple(members), elastic))
            for (op, var), cap in caps[key].items():
                capacity[name, op, var] = cap
        target = problem.accuracy.target if problem.accuracy.defined else None
        return cls(ops, variants, tuple(accuracy), accuracy, rank, capacity,
                   {o.name: o.rate for o in problem.operators}, tuple(slots), target, floor,
                   dict(problem.output_scale), {op: problem.ancestors(op) for op in ops})

    def slot(self, name: str) -> Slot:
        return next(s for s in self.slots if s.name == name)


@dataclass(frozen=True)
class Allocation:
    """A solved runtime model: workers per (slot, op, variant) and the shares of the paths."""

    workers: dict[tuple[str, str, str], int]
    paths: dict[tuple[str, ...], float]  # share of items per path; sums to `served`
    served: float  # fraction of the demand served
    accuracy: float  # Σ c[p]·acc[p] / served
    cost: float  # $/h of the workers used
    seconds: float


def solve(rp: RuntimeProblem, demand: Mapping[str, float], objective: Objective, counts: Mapping[str, int], *,
          variants: Mapping[str, str] | None = None, utilisation: float = 1.0,
          time_limit: float = 5.0) -> Allocation | None:
    """Solve for ``demand`` (items/s per operator) on ``counts`` workers per slot.

    ``variants`` fixes one variant per operator (hardware scaling alone); ``utilisation`` is the
    share of a worker's capacity a plan may use. None when no allocation meets the objective's
    constraints (the cost phase: serve everything at the target).
    """
    s = pywraplp.Solver.CreateSolver("SCIP")  # holds the model; HiGHS solves it
    paths = [p for p in rp.paths if variants is None or all(p[j] == variants.get(op, p[j])
                                                            for j, op in enumerate(rp.operators))]
    if not paths:
        return None
    c = {p: s.NumVar(0, 1, f"c[{'|'.join(p)}]") for p in paths}
    w = {}
    for (slot, op, var), _ in rp.capacity.items():
        if any(p[rp.operators.index(op)] == var for p in paths) and counts.get(slot, 0) > 0:
            w[slot, op, var] = s.IntVar(0, counts[slot], f"w[{slot},{op},{var}]")
    served = s.NumVar(0, 1, "served") if objective != "cost" else 1.0

    s.Add(sum(c.values()) == served, "shares")
    # Capacity: each variant's share of an operator's items fits its workers.
    for j, op in enumerate(rp.operators):
        for var in rp.variants[op]:
            share = sum((rp.reach(op, p) * c[p] for p in paths if p[j] == var), start=0.0)
            supply = sum((utilisation * rp.capacity[key] * x for key, x in w.items() if key[1:] == (op, var)), start=0.0)
            s.Add(demand.get(op, 0.0) * share <= supply, f"capacity[{op},{var}]")
    for slot in rp.slots:
        used = [x for key, x in w.items() if key[0] == slot.name]
        if used:
            s.Add(sum(used) <= counts.get(slot.name, 0), f"workers[{slot.name}]")
    accuracy = sum(rp.accuracy[p] * c[p] for p in paths)
    cost = sum((rp.slot(key[0]).price * x for key, x in w.items()), start=0.0)
    if objective == "cost":
        if rp.target is not None:
            s.Add(accuracy >= rp.target, "accuracy_target")
        # Equal cost: the more accurate allocation.
        s.Minimize(cost - COST_WEIGHT * accuracy)
        result = HighsModel(s, relative_gap=1e-6).solve(time_limit)
    else:
        if rp.floor is not None:
            s.Add(accuracy >= rp.floor * served, "accuracy_floor")
        # HiGHS gets the model through its proto without the sense: minimise the negation.
        s.Minimize(-served)
        started = time.perf_counter()
        first = HighsModel(s, relative_gap=1e-9).solve(time_limit)
        if first.values is None:
            return None
        most = float(first.values[served.index()])
        s.Add(served >= most - SERVED_SLACK, "most_served")
        s.Minimize(cost - COST_WEIGHT * accuracy if objective == "lean" else COST_WEIGHT * cost - accuracy)
        result = HighsModel(s, relative_gap=1e-6).solve(max(0.1, time_limit - (time.perf_counter() - started)))
        if result.values is None:  # out of time: the first stage's answer serves as many
            result = first
    if result.values is None:
        return None
    values = result.values

    def value(var) -> float:
        return float(values[var.index()]) if isinstance(var, pywraplp.Variable) else float(var)

    shares = {p: value(x) for p, x in c.items() if value(x) > EPS}
    total = sum(shares.values())
    workers = {key: round(value(x)) for key, x in w.items() if round(value(x)) > 0}
    return Allocation(
        workers=workers,
        paths=shares,
        served=value(served),
        accuracy=sum(rp.accuracy[p] * q for p, q in shares.items()) / total if total > EPS else 0.0,
        cost=sum(rp.slot(key[0]).price * n for key, n in workers.items()),
        seconds=result.seconds,
    )
