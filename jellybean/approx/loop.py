"""Biathlon's loop (Chang et al., PVLDB 2024, arXiv 2405.11191) on in-memory columns: sample a little of
each feature's records, estimate, propagate, and check the stopping rule; while it does not hold, sample
more of the feature with the highest priority; at worst every record is read and the prediction is exact.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from jellybean.approx import estimators
from jellybean.approx.errors import ApproxError
from jellybean.approx.estimators import Estimate, Statistic
from jellybean.approx.priority import prioritize
from jellybean.approx.propagate import Model, propagate
from jellybean.approx.stopping import Decision, StopRule

Aggregate = Literal["mean", "total", "count"]
AGGREGATES: tuple[str, ...] = ("mean", "total", "count")


@dataclass(frozen=True, eq=False)  # compared by identity: == on its column would be elementwise
class Feature:
    """An aggregate over one column of records: ``mean``, ``total``, ``count`` (``values`` boolean:
    True where a record matches) or any statistic (a callable, estimated by bootstrap)."""

    values: np.ndarray
    aggregate: Aggregate | Statistic = "mean"
    cost: float = 1.0  # of reading one more record

    def __post_init__(self) -> None:
        values = np.array(self.values)
        if values.ndim != 1 or values.size == 0:
            raise ApproxError(f"Feature.values has shape {values.shape}; give a non-empty 1-d column, one "
                              "entry per record")
        if not callable(self.aggregate) and self.aggregate not in AGGREGATES:
            raise ApproxError(f"Feature.aggregate {self.aggregate!r}: give one of {', '.join(AGGREGATES)}, "
                              "or a statistic (a callable, estimated by bootstrap)")
        if (isinstance(self.cost, bool) or not isinstance(self.cost, numbers.Real)
                or not (math.isfinite(self.cost) and self.cost > 0)):
            raise ApproxError(f"Feature.cost {self.cost!r}: give a positive finite cost per record read")
        values.flags.writeable = False
        object.__setattr__(self, "values", values)


@dataclass(frozen=True)
class ApproxResult:
    """The prediction where the loop stopped, and what it read to get there."""

    prediction: float
    confidence: float  # the stopping rule's, on the last round
    exact: bool  # every feature read all its records
    fractions: tuple[float, ...]  # share of each feature's records read
    iterations: int
    estimates: tuple[Estimate, ...]
    decision: Decision


def run_approx(features: Sequence[Feature], model: Model, rule: StopRule, *, initial: float = 0.05,
               step: float = 0.05, draws: int = 1024, base: int = 256, seed: int = 0) -> ApproxResult:
    """Predict with approximate features until ``rule`` holds.

    Each feature starts with ``initial`` of its records (at least 2) drawn without replacement; each
    round that the rule does not hold adds ``step`` of its records (at least 1) to the feature with
    the highest priority that still has records left. If no feature has a positive priority (the
    output's variance is all interactions, which first-order indices do not see), every feature
    that is still uncertain gets a step. Each round reads at least one more record, so the loop
    ends: at the latest when every record is read and the prediction is the exact one (``exact``).
    """
    if len(features) == 0:
        raise ApproxError("features is empty; give one Feature per model column")
    for name, share in (("initial", initial), ("step", step)):
        if isinstance(share, bool) or not isinstance(share, numbers.Real) or not 0 < share <= 1:
            raise ApproxError(f"run_approx: {name} {share!r}: give a share of the records in (0, 1]")
    # the records to read come from their own stream, so the QMC draws (seeded by `seed`) do not
    # shift when the sampling changes
    sampling = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    orders = [sampling.permutation(f.values.size) for f in features]
    sizes = [f.values.size for f in features]
    taken = [min(size, max(2, math.ceil(initial * size))) for size in sizes]
    costs = [f.cost for f in features]
    iterations = 0
    while True:
        iterations += 1
        estimates = tuple(_estimate(f, f.values[order[:n]], seed) for f, order, n in zip(features, orders, taken))
        spread = propagate(model, estimates, draws=draws, seed=seed)
        decision = rule.decide(spread.outputs, spread.point)
        open_ = [k for k in range(len(features)) if taken[k] < sizes[k]]
        if decision.stop or not open_:
            return ApproxResult(spread.point, decision.confidence, not open_,
                                tuple(n / size for n, size in zip(taken, sizes)), iterations, estimates, decision)
        ranked = [p.feature for p in prioritize(model, estimates, costs, base=base, seed=seed)
                  if p.priority > 0 and p.feature in open_]
        # a model that varies with every feature fixed is not deterministic: read more of everything
        chosen = ranked[:1] or [k for k in open_ if estimates[k].stderr > 0] or open_
        for k in chosen:
            taken[k] = min(sizes[k], taken[k] + max(1, math.ceil(step * sizes[k])))


def _estimate(feature: Feature, sample: np.ndarray, seed: int) -> Estimate:
    population = feature.values.size
    if feature.aggregate == "mean":
        return estimators.mean(sample, population)
    if feature.aggregate == "total":
        return estimators.total(sample, population)
    if feature.aggregate == "count":
        return estimators.count(sample, population)
    return estimators.bootstrap(sample, feature.aggregate, population, seed=seed)
