"""Which feature to sample more first: Biathlon's priority (Chang et al., PVLDB 2024, arXiv 2405.11191):
the first-order Sobol index of the model output with respect to each feature's sampling
uncertainty, per unit cost of one more sampled record.

The indices come from SALib (Saltelli sampling, ``SALib.sample.sobol``, and Sobol analysis,
``SALib.analyze.sobol``) with each feature normal around its estimate with its standard error, as in
``propagate``. Exact features (stderr 0) are left out of the analysis: their index is 0.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from SALib.analyze import sobol as sobol_analyze
from SALib.sample import sobol as sobol_sample

from jellybean.approx.errors import ApproxError
from jellybean.approx.estimators import Estimate
from jellybean.approx.propagate import Model, evaluate, feature_columns

# Outputs that vary less than this (relative to their size) are a constant model: no index to share.
CONSTANT_SPREAD = 1e-12


@dataclass(frozen=True)
class Priority:
    """One feature's place in the sampling order; ``priority`` 0 means sampling it more cannot help."""

    feature: int  # the column in the model's input
    index: float  # first-order Sobol index, in [0, 1]
    cost: float  # cost of one more sampled record
    priority: float  # index / cost


def sobol_indices(model: Model, estimates: Sequence[Estimate], base: int = 256, seed: int = 0) -> np.ndarray:
    """First-order Sobol indices of ``model`` w.r.t. each feature, one per estimate, in [0, 1].

    The model is called once, on base · (d + 2) rows for d uncertain features (``base`` a power of
    two). SALib's estimates are noisy and can fall slightly outside [0, 1]; they are clipped, since
    the priority only orders features.
    """
    values, stderrs = feature_columns(estimates)
    if (isinstance(base, bool) or not isinstance(base, numbers.Integral) or base < 2 or base & (base - 1)):
        raise ApproxError(f"sobol_indices: base {base!r}: give a power of two >= 2 (e.g. 256); Saltelli "
                          "sampling loses its balance at other sizes")
    uncertain = [int(k) for k in np.flatnonzero(stderrs > 0)]
    indices = np.zeros(len(estimates))
    if not uncertain:
        return indices
    problem = {
        "num_vars": len(uncertain),
        "names": [f"x{k}" for k in uncertain],
        "bounds": [[values[k], stderrs[k]] for k in uncertain],
        "dists": ["norm"] * len(uncertain),
    }
    drawn = sobol_sample.sample(problem, int(base), calc_second_order=False, seed=seed)
    inputs = np.tile(values, (drawn.shape[0], 1))
    inputs[:, uncertain] = drawn
    outputs = evaluate(model, inputs, "sobol_indices")
    if np.ptp(outputs) <= CONSTANT_SPREAD * max(1.0, float(np.max(np.abs(outputs)))):
        return indices
    # only the point estimates are used, so few resamples for SALib's (unused) confidence intervals
    with warnings.catch_warnings():
        # a classifier's outputs are constant on some of SALib's subsets; its "Constant values" warning
        # is expected then (the index is 0 there), and would reach the terminal of every query
        warnings.filterwarnings("ignore", message="Constant values encountered", category=UserWarning)
        analysis = sobol_analyze.analyze(problem, outputs, calc_second_order=False, num_resamples=10, seed=seed)
    indices[uncertain] = np.clip(np.nan_to_num(analysis["S1"], nan=0.0), 0.0, 1.0)
    return indices


def prioritize(model: Model, estimates: Sequence[Estimate], costs: Sequence[float] | None = None,
               base: int = 256, seed: int = 0) -> list[Priority]:
    """All features, highest priority first (ties: lower column first); ``costs`` is the cost of one
    more sampled record per feature (default 1 each). Exact features, and every feature of a model
    whose output does not vary, get priority 0."""
    costs = [1.0] * len(estimates) if costs is None else list(costs)
    if len(costs) != len(estimates):
        raise ApproxError(f"costs has {len(costs)} entries for {len(estimates)} features; give one cost "
                          "per feature, in the model's column order")
    for k, cost in enumerate(costs):
        if isinstance(cost, bool) or not isinstance(cost, numbers.Real) or not (math.isfinite(cost) and cost > 0):
            raise ApproxError(f"costs[{k}] {cost!r}: give a positive finite cost per sampled record")
    indices = sobol_indices(model, estimates, base=base, seed=seed)
    ranked = [Priority(k, float(indices[k]), float(costs[k]), float(indices[k]) / float(costs[k]))
              for k in range(len(estimates))]
    return sorted(ranked, key=lambda p: (-p.priority, p.feature))
