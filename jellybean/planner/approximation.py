"""What approximate variants save: the plan's inputs planned again without them.

A variant that `approximates` another (a sampled re-ID that embeds a sample of each track's crops)
is cheaper per item, so the planner picks it where its accuracy factor allows. To say by how much,
`plan` solves the problem once more with the approximate variants left out and records both costs
in the plan (`Plan.approximation`), which `explain` shows.
"""

from __future__ import annotations

from dataclasses import replace

from jellybean.errors import InfeasibleError, SolverError
from jellybean.planner.problem import Operator, Problem
from jellybean.spec.plan import Approximation, Plan


def without_approximation(problem: Problem) -> Problem:
    """`problem` with only exact variants (an operator with only approximate ones keeps them: it has
    no exact counterpart to compare with)."""
    operators = []
    for op in problem.operators:
        exact = tuple(v for v in op.variants if (op.name, v) not in problem.approximates)
        operators.append(Operator(op.name, exact or op.variants, op.rate, op.join))
    kept = {(op.name, v) for op in operators for v in op.variants}
    return replace(problem, operators=tuple(operators), approximates={},
                   capabilities={k: c for k, c in problem.capabilities.items() if (k[0], k[1]) in kept})


def approximate_choices(problem: Problem, plan: Plan) -> dict[str, str]:
    """operator -> the approximate variant the plan runs (the main one, in a mixed plan)."""
    return {op: v for op, v in plan.variants.items() if (op, v) in problem.approximates}


def compare_exact(problem: Problem, plan: Plan, make) -> Plan:
    """`plan` with `approximation` filled when it runs approximate variants: `make(problem)` plans the
    problem without them (the caller's strategy, time limit and solver)."""
    chosen = approximate_choices(problem, plan)
    if not chosen:
        return plan
    try:
        exact = make(without_approximation(problem))
    except (InfeasibleError, SolverError) as exc:
        return plan.model_copy(update={"approximation": Approximation(
            variants=chosen, reason=f"no plan without approximation: {exc}")})
    return plan.model_copy(update={"approximation": Approximation(
        variants=chosen, exact_cost=exact.cost.total, exact_variants=dict(exact.variants),
        exact_accuracy=exact.predicted.accuracy,
        reason="" if exact.solver.status == "OPTIMAL" else f"the plan without approximation is {exact.solver.status}")})
