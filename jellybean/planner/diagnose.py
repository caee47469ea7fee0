"""Say why no plan exists and what to relax: accuracy, reachability, then an elastic re-solve."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

from jellybean import graphs
from jellybean.errors import InfeasibleError
from jellybean.planner.model import SLACK_FAMILIES, Restriction
from jellybean.planner.problem import KB_PER_S_TO_MBPS, Problem
from jellybean.planner.solution import elastic_solve

MAX_ENUMERATION = 200_000


def best_accuracy(problem: Problem) -> tuple[float, dict[str, str]] | None:
    """Most accurate variant combination, or None when the problem sets no accuracy."""
    acc = problem.accuracy
    if not acc.defined:
        return None
    ops = [o for o in problem.operators]
    if math.prod(len(o.variants) for o in ops) <= MAX_ENUMERATION:
        best: tuple[float, dict[str, str]] | None = None
        for combo in itertools.product(*(o.variants for o in ops)):
            assignment = {o.name: v for o, v in zip(ops, combo)}
            value = acc.of(assignment)
            if value is not None and (best is None or value > best[0]):
                best = (value, assignment)
        return best
    # Too many to enumerate: factors compose independently, so take each operator's best.
    assignment = {o.name: max(o.variants, key=lambda v: acc.factors.get((o.name, v), 1.0)) for o in ops}
    value = acc.of(assignment)
    return (value, assignment) if value is not None else None


def reachable(problem: Problem, start: str) -> set[str]:
    out: dict[str, list[str]] = defaultdict(list)
    for link in problem.links:
        out[link.src].append(link.dst)
    return graphs.reachable(out, start) if problem.transit else {start, *out[start]}


def unreachable_streams(problem: Problem, restriction: Restriction) -> list[str]:
    """Streams whose items cannot reach, through links, locations able to run the whole chain."""
    able: dict[str, set[str]] = defaultdict(set)
    for pool in problem.pools:
        if not restriction.allows(pool.location):
            continue
        for (op, _var, hw), cap in problem.capabilities.items():
            if hw == pool.hardware and cap.memory_mb <= pool.memory_mb:
                able[op].add(pool.location)
    problems = []
    for stream in problem.streams:
        where = {stream.source: {stream.location}}
        for op in problem.operators:
            feeds = [where.get(e.src) for e in problem.inputs(op.name) if e.src in where]
            if not feeds:
                continue
            here = set()
            for locs in feeds:
                for loc in locs:
                    here |= reachable(problem, loc) & able[op.name]
            if not here:
                seen = sorted(set().union(*(reachable(problem, l) for locs in feeds for l in locs)))
                runs = sorted(able[op.name]) or ["nowhere"]
                problems.append(
                    f"source {stream.source} at {stream.location} cannot be served: no location reachable from "
                    f"it ({', '.join(seen)}) can run {op.name} (it runs at: {', '.join(runs)}); "
                    "add a link towards such a location or hardware that can run it"
                )
                break
            where[op.name] = here
    return problems


def explain_infeasible(problem: Problem, restriction: Restriction, backend: str = "HIGHS") -> InfeasibleError:
    p = problem
    head = f"no feasible plan for '{p.name}'"
    target = p.accuracy.target
    best = best_accuracy(p)
    if target is not None and best is not None and best[0] < target:
        combo = ", ".join(f"{o}={v}" for o, v in best[1].items())
        return InfeasibleError(
            f"{head}: the accuracy target {target:g} is above the best reachable {best[0]:.4g} ({combo}); "
            f"lower slo.accuracy to at most {best[0]:.4g} or add more accurate variants to the zoo"
        )
    unreachable = unreachable_streams(p, restriction)
    if unreachable:
        return InfeasibleError(f"{head}: " + "; ".join(unreachable[:5]) + (
            f" (and {len(unreachable) - 5} more)" if len(unreachable) > 5 else ""))

    families = [f for f in SLACK_FAMILIES
                if (f != "latency" or p.latency_bound_ms is not None)
                and (f != "accuracy" or (target is not None and p.accuracy.defined))
                and (f != "bandwidth" or any(l.bandwidth_kbps for l in p.links))]
    # Each family that alone restores feasibility is one way out; say them all.
    options = []
    for family in families:
        solution = elastic_solve(p, restriction, frozenset([family]), backend=backend)
        if solution is not None:
            options.append(_reasons(p, solution))
    if not options:
        solution = elastic_solve(p, restriction, frozenset(families), backend=backend)
        if solution is None or not solution.slack:
            return InfeasibleError(f"{head}: the constraints conflict in a way the diagnosis could not isolate; "
                                   "relax the latency bound or the accuracy target, or add workers")
        return InfeasibleError(f"{head}: relax all of these together: " + "; ".join(_reasons(p, solution)))
    if len(options) == 1:
        return InfeasibleError(f"{head}: " + "; ".join(options[0]))
    return InfeasibleError(f"{head}: any one of these would make a plan possible: "
                           + " OR ".join(f"({i + 1}) " + "; ".join(o) for i, o in enumerate(options)))


def _reasons(p: Problem, solution) -> list[str]:
    target = p.accuracy.target
    reasons: list[str] = []
    short: dict[str, float] = defaultdict(float)
    for key, value in sorted(solution.slack.items(), key=lambda kv: -kv[1]):
        kind = key[0]
        if kind == "capacity":
            short[key[2]] += value
        elif kind == "bandwidth":
            link = next(l for l in p.links if (l.src, l.dst) == (key[1], key[2]))
            need = (link.bandwidth_kbps + value) * KB_PER_S_TO_MBPS
            reasons.append(
                f"link {link.src}->{link.dst} would need {need:.1f} Mbps but has "
                f"{link.bandwidth_kbps * KB_PER_S_TO_MBPS:.1f}; raise its bandwidth_mbps or add a link"
            )
        elif kind == "latency":
            reasons.append(
                f"the latency bound {p.latency_bound_ms:g} ms cannot be met (needs about "
                f"{p.latency_bound_ms + value:.1f} ms); raise slo.latency_ms or add faster hardware nearer the sources"
            )
        elif kind == "accuracy":
            reasons.append(
                f"the accuracy target {target:g} cannot be met together with the other constraints "
                f"(reaches about {target * math.exp(-value):.4g}); lower slo.accuracy"
            )
    for op, items in short.items():
        reasons.insert(
            0,
            f"{op} needs {items:.1f} items/s more capacity than the workers it can reach "
            "(sites' hardware counts bind); add workers or raise the hardware counts",
        )
    return reasons
