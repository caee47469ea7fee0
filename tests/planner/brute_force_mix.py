"""An exhaustive solver for tiny mixed-variant problems, independent of jellybean.planner.model.

Semantics (Loki's path formulation, as the mixed model states them): a share c[p] ≥ 0 of the
items follows each variant combination p whose accuracy is defined, Σ c = 1, Σ c·acc ≥ target;
a worker hosts one variant; variant v of an operator serves rate × Σ_{p ∋ v} c[p] items/s; the
items of an edge whose path runs (a, b) on its ends are rate × their share, and have size(a, b).

It enumerates every number of workers per (pool, operator, variant) within the pools' counts,
cheapest first; for each, what is left (path shares, loads, flows per variant pair over the
links) is a linear programme, written here from those semantics and solved with GLOP. The search
stops once compute alone exceeds the best total found, so the answer is exact.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

from ortools.linear_solver import pywraplp

from jellybean.planner.problem import KB_PER_S_TO_GB_PER_H, Problem

TOLERANCE = 1e-9


def paths(problem: Problem) -> list[tuple[dict[str, str], float]]:
    out = []
    for combo in itertools.product(*(o.variants for o in problem.operators)):
        assignment = {o.name: v for o, v in zip(problem.operators, combo)}
        value = problem.accuracy.of(assignment)
        if value is not None:
            out.append((assignment, value))
    return out


def slots(problem: Problem, pool) -> list[tuple[str, str, float]]:
    """(operator, variant, capacity per worker) that a worker of ``pool`` can host."""
    out = []
    for op in problem.operators:
        for var in op.variants:
            cap = problem.capability(op.name, var, pool.hardware)
            if cap is not None and cap.memory_mb <= pool.memory_mb and cap.capacity > 0:
                out.append((op.name, var, cap.capacity))
    return out


def candidates(problem: Problem):
    """(compute $/h, {(pool, op, variant): workers}) for every allocation with enough capacity."""
    per_pool = []
    for pool in problem.pools:
        s = slots(problem, pool)
        options = [c for c in itertools.product(range(pool.count + 1), repeat=len(s)) if sum(c) <= pool.count]
        per_pool.append([(pool, s, c) for c in options])
    for choice in itertools.product(*per_pool):
        capacity: dict[str, float] = defaultdict(float)
        counts = {}
        compute = 0.0
        for pool, s, c in choice:
            for (op, var, cap), n in zip(s, c):
                if n:
                    capacity[op] += cap * n
                    counts[pool.name, op, var] = n
                    compute += pool.price * n
        if all(capacity[op.name] >= op.rate * (1 - 1e-12) for op in problem.operators):
            yield compute, counts


def network_cost(problem: Problem, counts: dict[tuple[str, str, str], int]) -> float | None:
    """Least network $/h over path shares, loads and flows for these workers; None if impossible."""
    p = problem
    solver = pywraplp.Solver.CreateSolver("GLOP")
    inf = solver.infinity()
    pools = {pool.name: pool for pool in p.pools}
    sources = set(p.source_names)
    locations = [loc.name for loc in p.locations]
    all_paths = paths(p)
    c = [solver.NumVar(0.0, 1.0, f"c{i}") for i in range(len(all_paths))]
    solver.Add(sum(c, start=0.0) == 1)
    if p.accuracy.target is not None and p.accuracy.defined:
        solver.Add(sum((ci * a for ci, (_, a) in zip(c, all_paths)), start=0.0) >= p.accuracy.target)

    def share(assign_src: str | None, src: str | None, dst: str, b: str):
        return sum((ci for ci, (path, _) in zip(c, all_paths)
                    if path[dst] == b and (src is None or path[src] == assign_src)), start=0.0)

    load = {}
    for (pool_name, op, var), n in counts.items():
        cap = p.capability(op, var, pools[pool_name].hardware).capacity
        load[pool_name, op, var] = solver.NumVar(0.0, cap * n, f"load[{pool_name},{op},{var}]")
    for op in p.operators:
        for var in op.variants:
            served = sum((x for (_, o, v), x in load.items() if (o, v) == (op.name, var)), start=0.0)
            solver.Add(served == op.rate * share(None, None, op.name, var))

    def at(op: str, loc: str):
        return sum((x for (pl, o, _), x in load.items() if o == op and pools[pl].location == loc), start=0.0)

    stream = defaultdict(float)
    for s in p.streams:
        stream[s.source, s.location] += s.rate

    def produced(e, loc):
        if e.src in sources:
            return stream[e.src, loc] * e.rate / p.rate(e.src)
        return at(e.src, loc) * (e.rate / p.rate(e.src))

    taken = {}
    for op in p.operators:
        ins = p.inputs(op.name)
        for loc in locations:
            if op.join == "merge":
                parts = {e.name: solver.NumVar(0.0, inf, f"in[{e.name},{loc}]") for e in ins}
                solver.Add(sum(parts.values(), start=0.0) == at(op.name, loc))
                taken.update({(e.name, loc): parts[e.name] for e in ins})
            else:
                for e in ins:
                    taken[e.name, loc] = at(op.name, loc) * (e.rate / op.rate)

    arcs = {(l.src, l.dst): l for l in p.links}
    if not p.transit:
        for loc in locations:
            arcs.setdefault((loc, loc), None)
    # One flow per (edge, arc, variant pair): items keep the size of their pair on every link.
    pairs = {e.name: [(a, b) for a in p.variants_of(e.src) for b in p.variants_of(e.dst)] for e in p.edges}
    flow = {(e.name, arc, pair): solver.NumVar(0.0, inf, "f") for e in p.edges for arc in arcs for pair in pairs[e.name]}
    for e in p.edges:
        def total(arc):
            return sum((flow[e.name, arc, pair] for pair in pairs[e.name]), start=0.0)
        for loc in locations:
            out = sum((total(a) for a in arcs if a[0] == loc), start=0.0)
            inn = sum((total(a) for a in arcs if a[1] == loc), start=0.0)
            if p.transit:
                solver.Add(produced(e, loc) + inn == taken[e.name, loc] + out)
            else:
                solver.Add(out == produced(e, loc))
                solver.Add(inn == taken[e.name, loc])
        src = e.src if e.src not in sources else None
        for a, b in pairs[e.name]:
            limit = e.rate * share(a, src, e.dst, b)
            if p.transit:  # an item may cross several links: a bound per link
                for arc in arcs:
                    solver.Add(flow[e.name, arc, (a, b)] <= limit)
            else:  # every item takes exactly one arc
                solver.Add(sum((flow[e.name, arc, (a, b)] for arc in arcs), start=0.0) == limit)

    cost = []
    for arc, link in arcs.items():
        if link is None:
            continue
        kb = sum((flow[e.name, arc, pair] * e.size(*pair) for e in p.edges for pair in pairs[e.name]), start=0.0)
        if link.bandwidth_kbps is not None:
            solver.Add(kb <= link.bandwidth_kbps)
        cost.append(kb * (KB_PER_S_TO_GB_PER_H * link.cost_per_gb))
    solver.Minimize(sum(cost, start=0.0))
    status = solver.Solve()
    if status == pywraplp.Solver.OPTIMAL:
        return solver.Objective().Value()
    if status == pywraplp.Solver.INFEASIBLE:
        return None
    raise RuntimeError(f"GLOP stopped with status {status} on {p.name}")


def brute_force_mix(problem: Problem) -> float | None:
    """The least total $/h of any mixed plan, or None when none exists."""
    best = math.inf
    for compute, counts in sorted(candidates(problem), key=lambda c: c[0]):
        if compute > best * (1 + TOLERANCE) + TOLERANCE:
            break
        network = network_cost(problem, counts)
        if network is not None:
            best = min(best, compute + network)
    return None if math.isinf(best) else best
