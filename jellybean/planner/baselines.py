"""Baselines to compare the optimal plan with: greedy per tier (as in the reference prototype),
all-cloud and all-edge. They are comparisons, never fallbacks: when one cannot place the
workload it raises, it does not hand back the optimal plan under another name."""

from __future__ import annotations

import math
from collections import defaultdict

from jellybean.errors import InfeasibleError
from jellybean.planner.diagnose import reachable
from jellybean.planner.model import Restriction
from jellybean.planner.problem import Problem


def _cost_per_item(problem: Problem, op: str, variant: str) -> float:
    """Cheapest $/h per item/s of ``variant`` on any hardware present."""
    best = math.inf
    for pool in problem.pools:
        cap = problem.capability(op, variant, pool.hardware)
        if cap is not None and cap.memory_mb <= pool.memory_mb:
            best = min(best, pool.price / cap.capacity if cap.capacity > 0 else math.inf)
    return best


def greedy_variants(problem: Problem) -> dict[str, str]:
    """Start from the cheapest variant of every operator; while the accuracy target is missed,
    upgrade the operator with the best accuracy gained per $/h added."""
    cost = {(o.name, v): _cost_per_item(problem, o.name, v) * o.rate for o in problem.operators for v in o.variants}
    choice = {o.name: min(o.variants, key=lambda v: cost[o.name, v]) for o in problem.operators}
    acc, target = problem.accuracy, problem.accuracy.target
    if target is None or not acc.defined:
        return choice

    def accuracy(assign: dict[str, str]) -> float:
        value = acc.of(assign)
        return -math.inf if value is None else value

    current = accuracy(choice)
    while current < target:
        best_move, best_score = None, -math.inf
        for o in problem.operators:
            for v in o.variants:
                if v == choice[o.name] or not math.isfinite(cost[o.name, v]):
                    continue
                trial = {**choice, o.name: v}
                gain = accuracy(trial) - current
                if gain <= 0 or not math.isfinite(accuracy(trial)):
                    continue
                extra = max(cost[o.name, v] - cost[o.name, choice[o.name]], 1e-9)
                reaches = accuracy(trial) >= target
                score = (1 if reaches else 0, gain / extra if not reaches else -extra)
                if best_move is None or score > best_score:
                    best_move, best_score = trial, score
        if best_move is None:
            raise InfeasibleError(
                f"greedy baseline: no single variant upgrade raises the accuracy above {current:.4g} "
                f"towards the target {target:g}; lower slo.accuracy"
            )
        choice, current = best_move, accuracy(best_move)
    return choice


def greedy_counts(problem: Problem, variants: dict[str, str]) -> list[tuple[str, str, int]]:
    """Place each operator, in topological order, as low in the tiers as its input can reach,
    filling the cheapest hardware per item first and sending what is left up a tier."""
    p = problem
    free = {pool.name: pool.count for pool in p.pools}
    produced: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for s in p.streams:
        produced[s.source][s.location] += s.rate
    reach = {loc.name: reachable(p, loc.name) | ({loc.name}) for loc in p.locations}
    counts: list[tuple[str, str, int]] = []
    for op in p.operators:
        demand: dict[str, float] = defaultdict(float)
        for e in p.inputs(op.name):
            share = e.rate / p.rate(e.src) * (op.rate / e.rate if op.join == "zip" else 1.0)
            for loc, rate in produced[e.src].items():
                if op.join == "zip" and e is not p.inputs(op.name)[0]:
                    continue  # a zip is placed where its first input arrives
                demand[loc] += rate * share
        var = variants[op.name]
        candidates = []
        for pool in p.pools:
            cap = p.capability(op.name, var, pool.hardware)
            if cap is not None and cap.memory_mb <= pool.memory_mb:
                candidates.append((p.location(pool.location).tier, pool.price / cap.capacity, pool.name, cap.capacity))
        for _tier, _unit, pool_name, capacity in sorted(candidates):
            pool = p.pool(pool_name)
            sources = sorted((loc for loc, d in demand.items() if d > 1e-9 and pool.location in reach[loc]),
                             key=lambda loc: p.location(loc).tier)
            wanted = sum(demand[loc] for loc in sources)
            if wanted <= 1e-9 or free[pool_name] == 0:
                continue
            workers = min(free[pool_name], math.ceil(wanted / capacity - 1e-9))
            served = min(workers * capacity, wanted)
            free[pool_name] -= workers
            counts.append((pool_name, op.name, workers))
            produced[op.name][pool.location] += served
            for loc in sources:
                take = min(demand[loc], served)
                demand[loc] -= take
                served -= take
        left = sum(demand.values())
        if left > 1e-6:
            raise InfeasibleError(
                f"greedy baseline: {left:.1f} items/s of {op.name} could not be placed on reachable workers; "
                "add workers or use --strategy optimal"
            )
    return counts


def greedy_restriction(problem: Problem) -> Restriction:
    variants = greedy_variants(problem)
    return Restriction(variants=tuple(variants.items()), counts=tuple(greedy_counts(problem, variants)))


def tier_restriction(problem: Problem, which: str) -> Restriction:
    tiers = [problem.location(pool.location).tier for pool in problem.pools]
    tier = max(tiers) if which == "cloud" else min(tiers)
    return Restriction(locations=frozenset(l.name for l in problem.locations if l.tier == tier))
