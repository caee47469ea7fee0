"""The optimal strategy is optimal: against exhaustive enumeration on tiny problems, against the
baselines on medium ones, and every plan it returns adds up when recomputed from its own parts."""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from functools import cache

import pytest

from jellybean.errors import InfeasibleError, JellyBeanError
from jellybean.planner.generate import random_problem, tiny_problem
from jellybean.planner.problem import KB_PER_S_TO_GB_PER_H, KB_PER_S_TO_MBPS, Problem
from jellybean.planner.strategies import make_plan
from jellybean.spec.plan import Plan

try:
    from .brute_force import brute_force
except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
    from brute_force import brute_force

TINY_SEEDS = range(40)
REL = 1e-6


def close(a: float, b: float, rel: float = REL) -> bool:
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


@cache
def tiny(seed: int) -> tuple[Problem, float | None]:
    problem = tiny_problem(seed)
    return problem, brute_force(problem)


def check_plan(problem: Problem, plan: Plan) -> None:
    """Recompute the plan from its workers, routes and links and compare with what it claims."""
    p = problem
    tol = 1e-6
    pools = {pool.name: pool for pool in p.pools}
    links = {(l.src, l.dst): l for l in p.links}

    # One variant per operator, meeting the accuracy target.
    assert set(plan.variants) == {o.name for o in p.operators}
    for op in p.operators:
        assert plan.variants[op.name] in op.variants
    if p.accuracy.defined:
        accuracy = p.accuracy.of(plan.variants)
        assert accuracy is not None
        assert close(plan.predicted.accuracy, accuracy)
        if p.accuracy.target is not None:
            assert accuracy >= p.accuracy.target * (1 - 1e-9)

    # Workers: within the pools, running the chosen variant, fitting memory, loads within capacity.
    used: dict[str, int] = defaultdict(int)
    load: dict[tuple[str, str], float] = defaultdict(float)  # (operator, location)
    compute = 0.0
    for w in plan.workers:
        pool = pools[w.pool]
        assert (w.location, w.hardware) == (pool.location, pool.hardware)
        assert w.count >= 1
        used[w.pool] += w.count
        assert w.variant == plan.variants[w.operator]
        cap = p.capability(w.operator, w.variant, pool.hardware)
        assert cap is not None and cap.memory_mb <= pool.memory_mb
        assert close(w.capacity, cap.capacity * w.count)
        assert -tol <= w.load <= cap.capacity * w.count * (1 + REL) + tol
        load[w.operator, w.location] += w.load
        compute += pool.price * w.count
    for name, count in used.items():
        assert count <= pools[name].count, name
    for op in p.operators:
        served = sum(v for (o, _), v in load.items() if o == op.name)
        assert close(served, op.rate), (op.name, served, op.rate)

    # Routes: over links (or staying put), with the bytes of the chosen variants.
    def variant(node: str) -> str:
        return plan.variants.get(node, "default")

    edges = {e.name: e for e in p.edges}
    link_kb: dict[tuple[str, str], float] = defaultdict(float)
    moved: dict[tuple[str, str, str], float] = defaultdict(float)  # (edge, from, to) items/s
    for r in plan.routes:
        e = edges[r.edge]
        assert r.from_ == r.to or (r.from_, r.to) in links, (r.from_, r.to)
        assert close(r.kb_per_s, r.items_per_s * e.size(variant(e.src), variant(e.dst)))
        moved[r.edge, r.from_, r.to] += r.items_per_s
        if r.from_ != r.to:
            link_kb[r.from_, r.to] += r.kb_per_s

    # Every edge's items go from where they are produced to where they are consumed.
    stream = defaultdict(float)
    for s in p.streams:
        stream[s.source, s.location] += s.rate
    for e in p.edges:
        dst = p.operator(e.dst)
        for loc in (l.name for l in p.locations):
            if e.src in p.source_names:
                produced = stream[e.src, loc] * e.rate / p.rate(e.src)
            else:
                produced = load[e.src, loc] * e.rate / p.rate(e.src)
            out_links = sum(v for (n, a, b), v in moved.items() if n == e.name and a == loc and b != loc)
            in_links = sum(v for (n, a, b), v in moved.items() if n == e.name and b == loc and a != loc)
            stay = moved.get((e.name, loc, loc), 0.0)
            if p.transit:
                taken = produced + in_links - out_links
            else:
                assert close(out_links + stay, produced), (e.name, loc)
                taken = in_links + stay
            if dst.join == "zip":
                assert close(taken, load[dst.name, loc] * e.rate / dst.rate), (e.name, loc, taken)
            else:
                assert taken >= -tol
        if dst.join == "merge":
            for loc in (l.name for l in p.locations):
                total = 0.0
                for f in p.inputs(dst.name):
                    if f.src in p.source_names:
                        produced = stream[f.src, loc] * f.rate / p.rate(f.src)
                    else:
                        produced = load[f.src, loc] * f.rate / p.rate(f.src)
                    out_links = sum(v for (n, a, b), v in moved.items() if n == f.name and a == loc and b != loc)
                    in_links = sum(v for (n, a, b), v in moved.items() if n == f.name and b == loc and a != loc)
                    stay = moved.get((f.name, loc, loc), 0.0)
                    total += produced + in_links - out_links if p.transit else in_links + stay
                assert close(total, load[dst.name, loc]), (dst.name, loc)

    # Links: bytes agree with the routes, within bandwidth, priced per GB.
    network = 0.0
    for use in plan.links:
        link = links[use.from_, use.to]
        assert close(use.kb_per_s, link_kb.get((use.from_, use.to), 0.0), rel=1e-5)
        if link.bandwidth_kbps is not None:
            assert use.kb_per_s <= link.bandwidth_kbps * (1 + REL) + tol
            assert close(use.bandwidth_mbps, link.bandwidth_kbps * KB_PER_S_TO_MBPS)
        cost = use.kb_per_s * KB_PER_S_TO_GB_PER_H * link.cost_per_gb
        assert close(use.cost_per_hour, cost)
        network += cost
    for arc, kb in link_kb.items():
        assert kb <= tol or any((u.from_, u.to) == arc for u in plan.links), arc

    assert close(plan.cost.compute, compute)
    assert close(plan.cost.network, network)
    assert close(plan.cost.total, plan.cost.compute + plan.cost.network)


# -- tiny problems against exhaustive enumeration -------------------------------------------------


@pytest.mark.parametrize("seed", TINY_SEEDS)
def test_optimal_matches_brute_force(seed: int) -> None:
    problem, best = tiny(seed)
    if best is None:
        with pytest.raises(InfeasibleError):
            make_plan(problem, "optimal")
        return
    plan = make_plan(problem, "optimal")
    assert plan.solver.status == "OPTIMAL"
    assert close(plan.cost.total, best), (plan.cost.total, best)
    check_plan(problem, plan)


def test_tiny_seeds_cover_the_cases() -> None:
    """The seeds above exercise what tiny_problem is for; a generator change must not lose it."""
    seen: dict[str, int] = defaultdict(int)
    for seed in TINY_SEEDS:
        problem, best = tiny(seed)
        seen["infeasible" if best is None else "feasible"] += 1
        if best is None:
            continue
        seen["transit" if problem.transit else "direct"] += 1
        seen["table" if problem.accuracy.tables else "factors"] += 1
        seen["three operators" if len(problem.operators) == 3 else "two operators"] += 1
        for op in problem.operators:
            if len(problem.inputs(op.name)) > 1:
                seen[op.join] += 1
        if any(e.sizes for e in problem.edges):
            seen["variant sizes"] += 1
        if any(l.bandwidth_kbps is not None for l in problem.links):
            unlimited = dataclasses.replace(
                problem, links=tuple(dataclasses.replace(l, bandwidth_kbps=None) for l in problem.links)
            )
            if brute_force(unlimited) < best * (1 - 1e-6):
                seen["bandwidth binds"] += 1
    for case in ("infeasible", "feasible", "transit", "direct", "table", "factors", "three operators",
                 "two operators", "zip", "merge", "variant sizes", "bandwidth binds"):
        assert seen[case] >= 1, (case, dict(seen))


def test_tiny_problem_is_deterministic() -> None:
    assert tiny_problem(7) == tiny_problem(7)
    assert tiny_problem(7) != tiny_problem(8)


# -- medium problems against the baselines --------------------------------------------------------

MEDIUM = [
    # (seed, options): ~30 workers over 4 tiers; small zoos keep the exact solve to seconds.
    (0, dict(operators=4, variants=3)),
    (1, dict(operators=4, variants=3, transit=False)),
    (2, dict(operators=5, variants=3, branch=True)),
    (3, dict(operators=4, variants=3, utilisation=(0.08, 0.12))),  # light load: all-cloud fits
    (5, dict(operators=4, variants=3, utilisation=(0.08, 0.12), transit=False)),
    (2, dict()),  # the full zoo: 6 operators of 6 variants (a few seconds)
]


@cache
def medium(seed: int, options: tuple) -> Problem:
    return random_problem(seed, workers=30, **dict(options))


@pytest.mark.parametrize(
    "seed,options", MEDIUM, ids=[f"seed{s}-" + ("-".join(f"{k}={v}" for k, v in o.items()) or "full") for s, o in MEDIUM]
)
def test_optimal_beats_baselines(seed: int, options: dict) -> None:
    problem = medium(seed, tuple(sorted(options.items())))
    optimal = make_plan(problem, "optimal", time_limit=60)
    assert optimal.solver.status == "OPTIMAL"
    check_plan(problem, optimal)
    greedy = make_plan(problem, "greedy")  # the generator promises that greedy places it
    check_plan(problem, greedy)
    assert optimal.cost.total <= greedy.cost.total * (1 + REL)
    for strategy in ("all-cloud", "all-edge"):
        try:
            baseline = make_plan(problem, strategy)
        except JellyBeanError:
            continue
        check_plan(problem, baseline)
        assert optimal.cost.total <= baseline.cost.total * (1 + REL), strategy


def test_some_medium_instance_fits_in_the_cloud() -> None:
    """So that the all-cloud comparison above is not vacuous."""
    fits = 0
    for seed, options in MEDIUM:
        try:
            make_plan(medium(seed, tuple(sorted(options.items()))), "all-cloud")
            fits += 1
        except JellyBeanError:
            pass
    assert fits >= 1


def test_random_problem_shape() -> None:
    problem = random_problem(11, workers=40)
    workers = sum(p.count for p in problem.pools)
    assert 0.85 * 40 <= workers <= 1.15 * 40
    assert {loc.tier_name for loc in problem.locations} == {"edge", "hub", "edge-dc", "cloud"}
    assert len(problem.operators) == 6 and all(len(o.variants) == 6 for o in problem.operators)
    assert all(0.5 < f <= 1.0 for f in problem.accuracy.factors.values())
    assert {s.location for s in problem.streams} == {l.name for l in problem.locations if l.tier == 0}
    # cheaper per hour at the edge, no charge for the first hop, dearer towards the cloud
    price = {loc.tier: [] for loc in problem.locations}
    for pool in problem.pools:
        price[problem.location(pool.location).tier].append(pool.price)
    assert max(price[0]) < min(price[3])
    tier = {loc.name: loc.tier for loc in problem.locations}
    assert all(l.cost_per_gb == 0 for l in problem.links if tier[l.src] == 0)
    assert all(tier[l.dst] > tier[l.src] for l in problem.links)
    assert random_problem(11, workers=40) == problem
