"""Propagating the features' sampling uncertainty through a model with quasi-Monte Carlo, as Biathlon
(Chang et al., PVLDB 2024, arXiv 2405.11191) does to see how far the prediction on the
approximate features may be from the prediction on the exact ones.

Each feature is taken as normal around its estimate with its standard error (the estimators are
asymptotically normal); scrambled Sobol points (``scipy.stats.qmc``) mapped through the normal
inverse CDF cover that distribution more evenly than random draws, so fewer model calls suffice.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats
from scipy.stats import qmc

from jellybean.approx.errors import ApproxError
from jellybean.approx.estimators import Estimate

Model = Callable[[np.ndarray], ArrayLike]
"""A model: a [rows, features] float array in, one number per row out (a class as an integer)."""


@dataclass(frozen=True, eq=False)  # compared by identity: == on its arrays would be elementwise
class Propagation:
    """The model's outputs on the drawn feature vectors, and its prediction at the estimates."""

    inputs: np.ndarray  # [draws, features], read-only
    outputs: np.ndarray  # [draws], read-only
    point: float


def propagate(model: Model, estimates: Sequence[Estimate], draws: int = 1024, seed: int = 0) -> Propagation:
    """Call ``model`` once on ``draws`` feature vectors drawn around ``estimates`` (one column each, in
    order) plus, as the last row, the estimates themselves; ``draws`` is a power of two, so the Sobol
    points keep their balance. A feature with stderr 0 (an exact one) stays at its value."""
    values, stderrs = feature_columns(estimates)
    m = _log2("propagate: draws", draws)
    inputs = np.tile(values, (draws, 1))
    uncertain = np.flatnonzero(stderrs > 0)
    if uncertain.size:
        unit = qmc.Sobol(uncertain.size, scramble=True, rng=seed).random_base2(m)
        inputs[:, uncertain] += stderrs[uncertain] * stats.norm.ppf(_open_unit(unit))
    outputs = evaluate(model, np.vstack([inputs, values]), "propagate")
    inputs.flags.writeable = False
    return Propagation(inputs, _read_only(outputs[:-1]), float(outputs[-1]))


def evaluate(model: Model, inputs: np.ndarray, where: str) -> np.ndarray:
    """The model's outputs on ``inputs`` as a 1-d float array, checked: one finite number per row."""
    raw = np.asarray(model(inputs))
    if raw.ndim == 2 and raw.shape[1] == 1:
        raw = raw[:, 0]
    if raw.shape != (inputs.shape[0],):
        raise ApproxError(f"{where}: the model returned shape {raw.shape} for {inputs.shape[0]} rows; "
                          f"return one number per row (shape ({inputs.shape[0]},))")
    if not (np.issubdtype(raw.dtype, np.number) or raw.dtype == np.bool_):
        raise ApproxError(f"{where}: the model returned dtype {raw.dtype}; return numbers "
                          "(a classifier: its classes encoded as integers)")
    outputs = raw.astype(float)
    bad = np.flatnonzero(~np.isfinite(outputs))
    if bad.size:
        raise ApproxError(f"{where}: the model returned {bad.size} non-finite output(s) (row {bad[0]}: "
                          f"{outputs[bad[0]]!r}, features {inputs[bad[0]].tolist()}); make the model finite "
                          "over the features' plausible range (e.g. clip or guard divisions)")
    return outputs


def feature_columns(estimates: Sequence[Estimate]) -> tuple[np.ndarray, np.ndarray]:
    """The estimates' values and standard errors as two arrays, checked: at least one Estimate."""
    if len(estimates) == 0:
        raise ApproxError("estimates is empty; give one Estimate per model feature, in the model's column order")
    for k, estimate in enumerate(estimates):
        if not isinstance(estimate, Estimate):
            raise ApproxError(f"estimates[{k}] is a {type(estimate).__name__}; give an "
                              "jellybean.approx.estimators.Estimate (from mean, total, count or bootstrap)")
    return (np.array([e.value for e in estimates], dtype=float),
            np.array([e.stderr for e in estimates], dtype=float))


def _log2(name: str, draws: object) -> int:
    if (isinstance(draws, bool) or not isinstance(draws, numbers.Integral) or draws < 2
            or draws & (draws - 1)):
        raise ApproxError(f"{name} {draws!r}: give a power of two >= 2 (e.g. 1024); Sobol points lose "
                          "their balance at other sizes")
    return int(math.log2(draws))


def _open_unit(unit: np.ndarray) -> np.ndarray:
    # a scrambled Sobol point may fall on 0 exactly, where the normal inverse CDF is -inf
    tiny = np.finfo(float).eps
    return np.clip(unit, tiny, 1 - tiny)


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.array(array)
    array.flags.writeable = False
    return array
