"""An exhaustive solver for tiny planning problems, independent of jellybean.planner.model.

It enumerates every variant assignment that meets the accuracy target and every integer number
of workers per (pool, operator) within the pools' counts (a worker runs the operator's chosen
variant, which must be profiled on the pool's hardware and fit its memory). Compute cost is then
fixed; what is left (loads per pool, flows of every workflow edge over the links) is a linear
programme, written here from the cost semantics and solved with GLOP. Candidates are taken in
order of compute cost and the search stops once compute alone exceeds the best total found, so the
answer is exact. Only for tiny problems: the enumeration is exponential.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

from ortools.linear_solver import pywraplp

from jellybean.planner.problem import KB_PER_S_TO_GB_PER_H, Problem

TOLERANCE = 1e-9


def assignments(problem: Problem) -> list[dict[str, str]]:
    """Every variant per operator whose predicted accuracy meets the target. A combination that
    an accuracy table lacks has no predicted accuracy and is never chosen, target or not."""
    ops = problem.operators
    acc = problem.accuracy
    out = []
    for combo in itertools.product(*(o.variants for o in ops)):
        assignment = {o.name: v for o, v in zip(ops, combo)}
        value = acc.of(assignment)
        if value is None:
            continue
        if acc.target is not None and acc.defined and value < acc.target:
            continue
        out.append(assignment)
    return out


def _pool_options(problem: Problem, pool, assignment: dict[str, str]) -> list[tuple[int, ...]]:
    """Worker counts per operator (in operator order) that one pool can give."""
    able = []
    for op in problem.operators:
        cap = problem.capability(op.name, assignment[op.name], pool.hardware)
        able.append(cap is not None and cap.memory_mb <= pool.memory_mb and cap.capacity > 0)
    ranges = [range(pool.count + 1) if ok else range(1) for ok in able]
    return [c for c in itertools.product(*ranges) if sum(c) <= pool.count]


def candidates(problem: Problem):
    """(compute $/h, assignment, {(pool, op): workers}) for every placement with enough capacity."""
    ops = problem.operators
    for assignment in assignments(problem):
        options = [_pool_options(problem, pool, assignment) for pool in problem.pools]
        caps = [[(problem.capability(op.name, assignment[op.name], pool.hardware).capacity
                  if problem.capability(op.name, assignment[op.name], pool.hardware) else 0.0)
                 for op in ops] for pool in problem.pools]
        for choice in itertools.product(*options):
            enough = all(
                sum(caps[i][j] * choice[i][j] for i in range(len(problem.pools))) >= op.rate * (1 - 1e-12)
                for j, op in enumerate(ops)
            )
            if not enough:
                continue
            compute = sum(pool.price * sum(choice[i]) for i, pool in enumerate(problem.pools))
            counts = {(pool.name, op.name): choice[i][j]
                      for i, pool in enumerate(problem.pools) for j, op in enumerate(ops) if choice[i][j] > 0}
            yield compute, assignment, counts


def network_cost(problem: Problem, assignment: dict[str, str], counts: dict[tuple[str, str], int]) -> float | None:
    """Least network $/h to serve every operator's rate with these workers; None if impossible."""
    p = problem
    solver = pywraplp.Solver.CreateSolver("GLOP")
    inf = solver.infinity()
    pools = {pool.name: pool for pool in p.pools}
    sources = set(p.source_names)
    locations = [loc.name for loc in p.locations]

    # Loads: items/s every (pool, operator) serves, within its workers' capacity.
    load = {}
    for (pool_name, op), n in counts.items():
        cap = p.capability(op, assignment[op], pools[pool_name].hardware).capacity
        load[pool_name, op] = solver.NumVar(0.0, cap * n, f"load[{pool_name},{op}]")

    def at(op: str, loc: str):
        return sum((var for (pl, o), var in load.items() if o == op and pools[pl].location == loc), start=0.0)

    for op in p.operators:
        solver.Add(sum((at(op.name, loc) for loc in locations), start=0.0) == op.rate)

    stream = defaultdict(float)
    for s in p.streams:
        stream[s.source, s.location] += s.rate

    def produced(e, loc):
        if e.src in sources:
            return stream[e.src, loc] * e.rate / p.rate(e.src)
        return at(e.src, loc) * (e.rate / p.rate(e.src))

    # Consumption: a zip takes its inputs in proportion; a merge takes any mix summing to its load.
    taken = {}
    for op in p.operators:
        ins = p.inputs(op.name)
        for loc in locations:
            if op.join == "merge":
                parts = {e.name: solver.NumVar(0.0, inf, f"in[{e.name},{loc}]") for e in ins}
                solver.Add(sum(parts.values(), start=0.0) == at(op.name, loc))
                for e in ins:
                    taken[e.name, loc] = parts[e.name]
            else:
                for e in ins:
                    taken[e.name, loc] = at(op.name, loc) * (e.rate / op.rate)

    # Flows: over links; without transit also "staying put", and only straight to the consumer.
    arcs = {(l.src, l.dst): l for l in p.links}
    if not p.transit:
        for loc in locations:
            arcs.setdefault((loc, loc), None)
    flow = {(e.name, arc): solver.NumVar(0.0, inf, f"f[{e.name},{arc}]") for e in p.edges for arc in arcs}
    for e in p.edges:
        for loc in locations:
            out = sum((flow[e.name, a] for a in arcs if a[0] == loc), start=0.0)
            inn = sum((flow[e.name, a] for a in arcs if a[1] == loc), start=0.0)
            if p.transit:
                solver.Add(produced(e, loc) + inn == taken[e.name, loc] + out)
            else:
                solver.Add(out == produced(e, loc))
                solver.Add(inn == taken[e.name, loc])

    # Bytes on every link, for the fixed variants; bandwidth and $/GB.
    def variant(node: str) -> str:
        return "default" if node in sources else assignment[node]

    cost = []
    for arc, link in arcs.items():
        if link is None:
            continue
        kb = sum((flow[e.name, arc] * e.size(variant(e.src), variant(e.dst)) for e in p.edges), start=0.0)
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


def brute_force(problem: Problem) -> float | None:
    """The least total $/h of any plan, or None when no plan exists."""
    best = math.inf
    for compute, assignment, counts in sorted(candidates(problem), key=lambda c: c[0]):
        if compute > best * (1 + TOLERANCE) + TOLERANCE:
            break  # network cost is never negative: nothing further can be cheaper
        network = network_cost(problem, assignment, counts)
        if network is not None:
            best = min(best, compute + network)
    return None if math.isinf(best) else best
