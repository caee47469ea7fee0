"""Aggregates estimated from a simple random sample, each with its standard error: the approximate
features of Biathlon (Chang et al., PVLDB 2024, arXiv 2405.11191).

``mean``, ``total`` and ``count`` have closed-form standard errors; any other aggregate gets one by
bootstrap (``scipy.stats.bootstrap``). When the population size N is known, the sample is taken
without replacement and the finite-population correction applies: once the sample is the whole
population the estimate is exact and its standard error is 0.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from jellybean.approx.errors import ApproxError

Statistic = Callable[..., float]


@dataclass(frozen=True)
class Estimate:
    """An aggregate's estimate from ``n`` sampled records out of ``population`` (None: unknown or
    unbounded, so no finite-population correction)."""

    value: float
    stderr: float
    n: int
    population: int | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.value):
            raise ApproxError(f"Estimate.value {self.value!r}: give a finite number")
        if not (math.isfinite(self.stderr) and self.stderr >= 0):
            raise ApproxError(f"Estimate.stderr {self.stderr!r}: give a finite number >= 0")
        _check_count("Estimate.n", self.n)
        if self.population is not None:
            _check_population("Estimate.population", self.population, self.n)
            if self.n == self.population and self.stderr != 0:
                raise ApproxError(f"Estimate.stderr {self.stderr!r}: the sample is the whole population "
                                  f"(n == population == {self.n}), so the estimate is exact; give stderr=0")

    @property
    def exact(self) -> bool:
        """Whether the sample is the whole population."""
        return self.population is not None and self.n == self.population


def fpc(n: int, population: int | None) -> float:
    """The finite-population correction of a standard error computed with the sample standard
    deviation s (ddof=1): sqrt((N - n) / N).

    Why not sqrt((N - n) / (N - 1)): that factor goes with the population's sd σ (ddof=0), since
    Var(mean) = σ²/n · (N-n)/(N-1) = S²/n · (N-n)/N with S² = σ² N/(N-1). The sample gives s, an
    unbiased estimate of S², so (N - n)/N keeps the variance estimate unbiased (Cochran, Sampling
    Techniques, thm. 2.2). Both are exactly 0 at n == N.
    """
    _check_count("n", n)
    if population is None:
        return 1.0
    _check_population("population", population, n)
    return math.sqrt((population - n) / population)


def mean(sample: ArrayLike, population: int | None = None) -> Estimate:
    """The mean of the population, estimated by the sample mean; stderr s/√n · fpc."""
    values = _values("mean", sample)
    n = values.size
    if population is not None:
        _check_population("mean: population", population, n)
    if n == population:
        return Estimate(float(values.mean()), 0.0, n, population)
    _check_spread("mean", n, population)
    stderr = float(values.std(ddof=1)) / math.sqrt(n) * fpc(n, population)
    return Estimate(float(values.mean()), stderr, n, population)


def total(sample: ArrayLike, population: int) -> Estimate:
    """The sum over the population, estimated as N times the sample mean; stderr N · s/√n · fpc."""
    if population is None:
        raise ApproxError("total: population is None; a sum over a sample scales with the population "
                          "size, so give population=N (the number of records sampled from)")
    per_record = mean(sample, population)
    return Estimate(population * per_record.value, population * per_record.stderr, per_record.n, population)


WILSON_Z = 1.96  # the normal quantile of the Wilson bound a sample with no (or only) matches gets


def share(sample: ArrayLike, population: int | None = None,
          where: Callable[[np.ndarray], ArrayLike] | None = None) -> Estimate:
    """The share of the population's records that match, estimated by the sample's share p.

    ``sample`` is a boolean array (True: the record matches), or any records with ``where`` the
    predicate that maps them to such an array. The stderr is sqrt(p(1-p)/(n-1)) · fpc, the mean's.
    When the sample has no matches (or only matches) and is not the whole population, that plug-in
    stderr would be 0 although the share may well be positive; then the stderr is the distance from
    p to the far end of the 95 % Wilson score interval over z: z/(n + z²) · fpc, which is > 0
    and shrinks as 1/n (Wilson, JASA 1927; Brown, Cai & DasGupta, Stat. Sci. 2001).
    """
    matches = np.asarray(sample if where is None else where(np.asarray(sample)))
    if matches.dtype != np.bool_:
        hint = "the predicate must return" if where is not None else "give"
        raise ApproxError(f"share/count: sample has dtype {matches.dtype}; {hint} a boolean array "
                          "(True where the record matches), or pass where=predicate")
    estimate = mean(matches.astype(float), population)
    hits = int(np.count_nonzero(matches))
    if estimate.exact or 0 < hits < matches.size:
        return estimate
    stderr = WILSON_Z / (matches.size + WILSON_Z ** 2) * fpc(matches.size, population)
    return Estimate(estimate.value, stderr, estimate.n, population)


def count(sample: ArrayLike, population: int, where: Callable[[np.ndarray], ArrayLike] | None = None) -> Estimate:
    """The number of records in the population that match: N times their ``share`` in the sample (its
    stderr times N, so a sample with no or only matches gets the Wilson bound's stderr, not 0)."""
    if population is None:
        raise ApproxError("count: population is None; a count scales with the population size, so give "
                          "population=N (the number of records sampled from)")
    proportion = share(sample, population, where)
    return Estimate(population * proportion.value, population * proportion.stderr, proportion.n, population)


def bootstrap(sample: ArrayLike, statistic: Statistic, population: int | None = None,
              resamples: int = 1000, seed: int = 0) -> Estimate:
    """Any other aggregate (median, quantile, trimmed mean, ...): the statistic of the sample, with the
    standard deviation of its bootstrap distribution (``scipy.stats.bootstrap``) as the stderr, times
    the finite-population correction (an approximation: the bootstrap resamples with replacement).

    ``statistic`` maps a 1-d array to a number; if it takes an ``axis`` argument (as numpy's
    reductions do) scipy calls it on all resamples at once. It must estimate the population's
    statistic from the sample as is (a median, not a sum: use ``total`` for those).
    """
    values = _values("bootstrap", sample)
    n = values.size
    if not (isinstance(resamples, numbers.Integral) and not isinstance(resamples, bool) and resamples >= 10):
        raise ApproxError(f"bootstrap: resamples {resamples!r}: give an integer >= 10 (1000 is typical)")
    if population is not None:
        _check_population("bootstrap: population", population, n)
    value = float(np.asarray(statistic(values)))
    if not math.isfinite(value):
        raise ApproxError(f"bootstrap: the statistic of the sample is {value!r}; give a statistic that "
                          "returns a finite number for this sample")
    if n == population:
        return Estimate(value, 0.0, n, population)
    _check_spread("bootstrap", n, population)
    result = stats.bootstrap((values,), statistic, n_resamples=int(resamples), method="percentile", rng=seed)
    stderr = float(result.standard_error)
    if not math.isfinite(stderr):
        raise ApproxError(f"bootstrap: the statistic's bootstrap stderr is {stderr!r}; give a statistic "
                          "that is finite on every resample of the sample")
    return Estimate(value, stderr * fpc(n, population), n, population)


def _values(where: str, sample: ArrayLike) -> np.ndarray:
    try:
        values = np.asarray(sample, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ApproxError(f"{where}: sample is not numeric ({exc}); give a 1-d array of numbers") from exc
    if values.ndim != 1:
        raise ApproxError(f"{where}: sample has shape {values.shape}; give a 1-d array, one value per record")
    if values.size == 0:
        raise ApproxError(f"{where}: sample is empty; give at least 2 sampled values")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ApproxError(f"{where}: sample has {bad.size} non-finite value(s) (first at index {bad[0]}: "
                          f"{values[bad[0]]!r}); drop or impute them before estimating")
    return values


def _check_spread(where: str, n: int, population: int | None) -> None:
    if n < 2:
        whole = "" if population is None else f" (population is {population})"
        raise ApproxError(f"{where}: sample has 1 value{whole}; a standard error needs at least 2 sampled "
                          "values, or the whole population")


def _check_count(name: str, n: object) -> None:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ApproxError(f"{name} {n!r}: give an integer >= 1 (the number of sampled records)")


def _check_population(name: str, population: object, n: int) -> None:
    if isinstance(population, bool) or not isinstance(population, numbers.Integral) or population < 1:
        raise ApproxError(f"{name} {population!r}: give an integer >= 1 (the number of records sampled "
                          "from), or None if unknown")
    if n > population:
        raise ApproxError(f"{name} {population}: smaller than the sample ({n} records); a sample without "
                          "replacement cannot exceed the population, so give the true population size")
