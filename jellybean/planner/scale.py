"""Variants that pass on less than they take: one planning problem per output scale.

A strided detector (`params.stride: 2`) looks at half a camera's frames, so re-ID and everything
after it get half the crops. The model (`model.py`) takes every operator's rate as fixed, which
holds once the scale of every variant upstream is: the problem splits into one part per choice
of output scale for the operators that have variants of different scales, each part with only
those variants and with its rates scaled. The parts are solved in turn and the cheapest plan
wins; a part that stopped at its time limit with a bound below it leaves the gap open.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

from jellybean.errors import NotSupportedError
from jellybean.planner.problem import Edge, Operator, Problem

MAX_PARTS = 16


@dataclass(frozen=True)
class Part:
    scales: dict[str, float]  # operator -> the output scale of the variants it may run here
    problem: Problem


def scale_parts(problem: Problem) -> list[Part]:
    """The parts to solve: [the problem itself] when no variant scales its outputs."""
    scaled = [op for op in problem.operators
              if any(problem.output_scale.get((op.name, v), 1.0) != 1.0 for v in op.variants)]
    if not scaled:
        return [Part({}, problem)]
    levels = [sorted({problem.output_scale.get((op.name, v), 1.0) for v in op.variants}, reverse=True)
              for op in scaled]
    if math.prod(len(lv) for lv in levels) > MAX_PARTS:
        raise NotSupportedError(
            f"not supported: {math.prod(len(lv) for lv in levels)} combinations of output scales over "
            f"{', '.join(op.name for op in scaled)} (at most {MAX_PARTS}); give fewer strides in the zoo")
    return [_part(problem, dict(zip((op.name for op in scaled), pick))) for pick in itertools.product(*levels)]


def _part(problem: Problem, scales: dict[str, float]) -> Part:
    def factor(ops: tuple[str, ...]) -> float:
        value = 1.0
        for op in ops:
            value *= scales.get(op, 1.0)
        return value

    operators = []
    for op in problem.operators:
        keep = op.variants
        if op.name in scales:
            keep = tuple(v for v in op.variants if problem.output_scale.get((op.name, v), 1.0) == scales[op.name])
        operators.append(Operator(op.name, keep, op.rate * factor(problem.ancestors(op.name)), op.join))
    edges = []
    for e in problem.edges:
        through = () if e.src in problem.source_names else (*problem.ancestors(e.src), e.src)
        edges.append(Edge(e.src, e.dst, e.rate * factor(through), e.item_kb, e.sizes))
    return Part(scales, replace(problem, operators=tuple(operators), edges=tuple(edges), output_scale={}))
