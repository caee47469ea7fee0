"""Stage 4: turn a solution into a Plan: workers, routes, link use, costs and predictions."""

from __future__ import annotations

from collections import defaultdict

from jellybean.planner.mix import operator_shares, reason
from jellybean.planner.model import hop_ms
from jellybean.planner.problem import KB_PER_S_TO_GB_PER_H, KB_PER_S_TO_MBPS, Problem
from jellybean.planner.solution import Solution
from jellybean.spec.plan import (Costs, LinkUse, Mixing, PathShare, Plan, Prediction, Route, SolverInfo, StreamRate,
                                 WorkerGroup)

BINDING_FRACTION = 0.999


def extract_plan(problem: Problem, solution: Solution, strategy: str, inputs: dict[str, str] | None = None) -> Plan:
    p = problem
    pools = {pool.name: pool for pool in p.pools}
    tiers = {loc.name: loc for loc in p.locations}

    workers: list[WorkerGroup] = []
    taken: dict[str, int] = defaultdict(int)
    for (pool_name, op, var), count in sorted(solution.workers.items()):
        pool = pools[pool_name]
        cap = p.capability(op, var, pool.hardware)
        start = taken[pool_name]
        taken[pool_name] += count
        workers.append(
            WorkerGroup(
                location=pool.location,
                tier=tiers[pool.location].tier_name,
                pool=pool_name,
                hardware=pool.hardware,
                operator=op,
                variant=var,
                count=count,
                load=solution.loads.get((pool_name, op, var), 0.0),
                capacity=cap.capacity * count,
                batch=cap.batch,
                latency_ms=cap.latency_ms,
                threads=cap.threads,
                price_per_hour=pool.price,
                members=pool.members[start : start + count],
            )
        )

    flows = dict(solution.flows)
    kb_of = dict(solution.kb)
    if p.transit:
        # Items consumed where they arrive are the part of consumption that did not come in by link.
        edges = {e.name: e for e in p.edges}
        inflow: dict[tuple[str, str], float] = defaultdict(float)
        for (edge, arc), items in solution.flows.items():
            inflow[edge, arc[1]] += items
        for (edge, loc), items in solution.consumed.items():
            local = items - inflow[edge, loc]
            if local > 1e-6:
                flows[edge, (loc, loc)] = local
                e = edges[edge]
                kb_of[edge, (loc, loc)] = local * _item_kb(p, solution, e)
    routes = [
        Route.model_validate({"edge": edge, "from": arc[0], "to": arc[1], "items_per_s": items,
                              "kb_per_s": kb_of[edge, arc]})
        for (edge, arc), items in sorted(flows.items())
    ]
    link_kb: dict[tuple[str, str], float] = defaultdict(float)
    for (edge, arc), kb in solution.kb.items():
        if arc[0] != arc[1]:
            link_kb[arc] += kb
    links = []
    for link in p.links:
        kb = link_kb.get((link.src, link.dst), 0.0)
        if kb <= 0 and link.bandwidth_kbps is None:
            continue
        links.append(
            LinkUse.model_validate({
                "from": link.src, "to": link.dst, "kb_per_s": kb,
                "bandwidth_mbps": link.bandwidth_kbps * KB_PER_S_TO_MBPS if link.bandwidth_kbps else None,
                "latency_ms": link.latency_ms, "cost_per_gb": link.cost_per_gb,
                "cost_per_hour": kb * KB_PER_S_TO_GB_PER_H * link.cost_per_gb,
            })
        )

    compute = sum(w.cost_per_hour for w in workers)
    network = sum(l.cost_per_hour for l in links)
    throughput = defaultdict(float)
    for w in workers:
        throughput[w.operator] += w.load
    names = [op.name for op in p.operators]
    if solution.paths:  # the traffic-weighted mix over the paths
        accuracy = sum(c * (p.accuracy.of(dict(zip(names, path))) or 0.0) for path, c in solution.paths.items())
        accuracy = accuracy if p.accuracy.defined else None
    else:
        accuracy = p.accuracy.of(solution.variants) if p.accuracy.defined else None
    latency = route_latency(p, solution, workers)

    plan = Plan(
        name=p.name,
        strategy=strategy,
        inputs=inputs or {},
        solver=SolverInfo(status=solution.status, gap=solution.gap, seconds=round(solution.seconds, 3),
                          backend=solution.backend, best_bound=solution.best_bound),
        variants=dict(solution.variants),
        mix=operator_shares(names, solution.paths),
        mixing=_mixing(p, solution, compute + network),
        tiers={loc.name: loc.tier for loc in p.locations},
        streams=tuple(StreamRate(source=s.source, location=s.location, rate=s.rate, count=s.count) for s in p.streams),
        workers=tuple(workers),
        routes=tuple(routes),
        links=tuple(links),
        cost=Costs(compute=compute, network=network, total=compute + network),
        predicted=Prediction(
            accuracy=accuracy,
            accuracy_metric=p.accuracy.metric,
            accuracy_target=p.accuracy.target,
            throughput=dict(throughput),
            latency_ms=latency,
            latency_bound_ms=p.latency_bound_ms,
        ),
    )
    return plan.model_copy(update={"binding": tuple(binding_constraints(p, plan))})


def _variant(problem: Problem, solution: Solution, node: str) -> str:
    return solution.variants.get(node, "default")


def _item_kb(problem: Problem, solution: Solution, e) -> float:
    """KB per item of edge ``e``: in a mixed plan, the average over its (source, destination) variant pairs."""
    if not solution.paths:
        return e.size(_variant(problem, solution, e.src), solution.variants[e.dst])
    names = [op.name for op in problem.operators]
    total = 0.0
    for path, c in solution.paths.items():
        chosen = dict(zip(names, path))
        total += c * e.size(chosen.get(e.src, "default"), chosen[e.dst])
    return total


def _mixing(problem: Problem, solution: Solution, cost: float) -> Mixing | None:
    if not solution.mix_considered and not solution.mix_note:
        return None
    names = [op.name for op in problem.operators]
    one = solution.one_variant_variants
    why = reason(problem, solution.paths, cost, solution.one_variant_cost, one)
    if solution.mix_note:
        why = f"{why}; {solution.mix_note}" if why else solution.mix_note
    return Mixing(
        chosen=bool(solution.paths),
        one_variant_cost=solution.one_variant_cost,
        one_variant_variants=dict(one),
        one_variant_accuracy=problem.accuracy.of(one) if one and problem.accuracy.defined else None,
        paths=tuple(PathShare(variants=dict(zip(names, path)), share=c,
                              accuracy=problem.accuracy.of(dict(zip(names, path))))
                    for path, c in sorted(solution.paths.items(), key=lambda kv: -kv[1])),
        reason=why,
    )


def route_latency(problem: Problem, solution: Solution, workers: list[WorkerGroup]) -> float | None:
    """Worst compute + link latency over the routes the plan uses (no queueing)."""
    p = problem
    links = {(l.src, l.dst): l for l in p.links}
    compute: dict[tuple[str, str], float] = {}
    for w in workers:
        key = (w.operator, w.location)
        compute[key] = max(compute.get(key, 0.0), w.latency_ms)
    ready: dict[tuple[str, str], float] = {}
    for s in p.streams:
        ready[s.source, s.location] = 0.0
    for op in p.operators:
        arrive: dict[str, float] = defaultdict(lambda: -1.0)
        for e in p.inputs(op.name):
            at: dict[str, float] = {loc: t for (node, loc), t in ready.items() if node == e.src}
            used = [(arc, f) for (edge, arc), f in solution.flows.items() if edge == e.name]
            # Relax along used arcs; a route has at most one arc per location.
            for _ in range(len(p.locations)):
                changed = False
                for arc, _f in used:
                    if arc[0] not in at:
                        continue
                    hop = 0.0 if arc[0] == arc[1] else hop_ms(e, links[arc])
                    t = at[arc[0]] + hop
                    if t > at.get(arc[1], -1.0) + 1e-9:
                        at[arc[1]] = t
                        changed = True
                if not changed:
                    break
            for loc, t in at.items():
                arrive[loc] = max(arrive[loc], t)
        for (name, loc), c in compute.items():
            if name == op.name and arrive[loc] >= 0:
                ready[op.name, loc] = arrive[loc] + c
    values = [t for (node, _), t in ready.items() if node in {o.name for o in p.operators}]
    return max(values) if values else None


def binding_constraints(problem: Problem, plan: Plan) -> list[str]:
    """Constraints at (or within 0.1 % of) their limit in this plan, in words."""
    out: list[str] = []
    used: dict[str, int] = defaultdict(int)
    for w in plan.workers:
        used[w.pool] += w.count
    for pool in problem.pools:
        if used.get(pool.name, 0) >= pool.count and pool.count > 0:
            out.append(f"workers: all {pool.count} {pool.hardware} at {pool.location} are used")
    for link in plan.links:
        if link.utilisation is not None and link.utilisation >= BINDING_FRACTION:
            out.append(f"bandwidth: link {link.from_}->{link.to} is full ({link.mbps:.1f} of {link.bandwidth_mbps:.1f} Mbps)")
    acc, target = plan.predicted.accuracy, plan.predicted.accuracy_target
    if acc is not None and target is not None and acc <= target / BINDING_FRACTION:
        out.append(f"accuracy: {acc:.4g} against a target of {target:.4g}")
    lat, bound = plan.predicted.latency_ms, plan.predicted.latency_bound_ms
    if lat is not None and bound is not None and lat >= bound * BINDING_FRACTION:
        out.append(f"latency: {lat:.1f} ms against a bound of {bound:.1f} ms")
    return out
