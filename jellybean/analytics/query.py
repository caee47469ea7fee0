"""The congestion query, exact and approximate: Biathlon's loop (jellybean.approx) on DuckDB samples.

The approximate query reads the features from two samples of the store, one per window (the last
hour: vehicles, speed, stopped share; the last 15 minutes: vehicles, speed), each a DuckDB
``TABLESAMPLE SYSTEM (p PERCENT) REPEATABLE (seed)`` of the whole table filtered to the window, with
its own fraction p. In one pass a sample gives the rows it read (n), those in the window (m) and
their speeds; so the window's count is the table's rows times the share m/n (``estimators.count``,
population = the table), its mean speed and stopped share are the mean and share of the m speeds,
with the finite-population correction of the sampled fraction n/rows (exact once p = 100 %).
The estimates go through the model with QMC (``propagate``); the rule (``StopRule``) decides, at a
stricter τ each round so that the chances of a wrong stop add up to at most 1 - τ (``_spent``); while
it does not hold, the window whose features have the larger first-order Sobol index per row read
(``prioritize``) is sampled again at twice its fraction. SYSTEM samples at different fractions are
not nested in DuckDB, so each round draws afresh (new seed) and the last sample of each window is
the one estimated from; at 100 % the window is read whole and its features are exact.

Samples run with DuckDB on one thread: with more, REPEATABLE does not repeat (vectors are handed to
threads in a racy order), and one seed should give one answer.
"""

from __future__ import annotations

import math
import numbers
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from jellybean.analytics.errors import AnalyticsError
from jellybean.analytics.features import (NAMES, RECENT_S, STOP_SPEED, WINDOW_S, MIN_ROWS, Where, check_target,
                                          exact as exact_features, no_traffic, time_of_day)
from jellybean.analytics.model import CongestionModel
from jellybean.analytics.store import TABLE, scalar
from jellybean.approx import estimators
from jellybean.approx.estimators import Estimate
from jellybean.approx.priority import prioritize
from jellybean.approx.propagate import propagate
from jellybean.approx.stopping import StopRule

VECTOR = 2048               # rows DuckDB's SYSTEM sample keeps or skips together
MIN_VECTORS = 16            # the first sample holds at least this many vectors in expectation
GROUPS = {"hour": (0, 1, 2), "recent": (3, 4)}     # window -> the features (columns of NAMES) it gives
GROUP_OF = {k: g for g, ks in GROUPS.items() for k in ks}
SPAN = {"hour": WINDOW_S, "recent": RECENT_S}


@dataclass(frozen=True)
class Options:
    """The stopping rule and the loop's knobs. ``delta`` None: predict the class (the rule asks the class
    not to change); a number: predict P(congested) within ``delta``."""

    tau: float = 0.95
    delta: float | None = None
    initial: float = 0.005
    growth: float = 2.0
    draws: int = 512
    base: int = 128
    seed: int = 0

    def rule(self) -> StopRule:
        if isinstance(self.tau, bool) or not isinstance(self.tau, numbers.Real) or not 0 < self.tau < 1:
            raise AnalyticsError(f"--tau {self.tau!r}: give a confidence strictly between 0 and 1 (e.g. 0.95)")
        if self.delta is None:
            return StopRule(float(self.tau), 0.0, "classifier")
        if not (isinstance(self.delta, numbers.Real) and math.isfinite(self.delta) and 0 <= self.delta <= 1):
            raise AnalyticsError(f"--delta {self.delta!r}: give a finite bound in [0, 1] on |P(congested) - exact|, "
                                 "or leave it out to predict the class")
        return StopRule(float(self.tau), float(self.delta), "regression")

    def check(self) -> None:
        self.rule()
        if not (math.isfinite(self.initial) and 0 < self.initial <= 1):
            raise AnalyticsError(f"--initial {self.initial!r}: give the first sample's share of the table in (0, 1]")
        if not (math.isfinite(self.growth) and self.growth > 1):
            raise AnalyticsError(f"--growth {self.growth!r}: give a factor > 1 by which a sample grows")


@dataclass(frozen=True)
class Exact:
    where: Where
    prediction: float
    features: tuple[float, ...]
    seconds: float


@dataclass(frozen=True)
class Approx:
    where: Where
    prediction: float
    confidence: float
    exact: bool                             # every window was read whole
    fractions: dict[str, float]             # each window's last sample, as a share of the table
    read: float                             # rows read over all rounds, as a share of the table
    rounds: int
    seconds: float
    estimates: dict[str, tuple[float, float]] = field(default_factory=dict)   # feature -> (value, stderr)
    reason: str = ""


@contextmanager
def _one_thread(con):
    threads = scalar(con, "SELECT current_setting('threads')")
    con.execute("SET threads = 1")
    try:
        yield
    finally:
        con.execute(f"SET threads = {int(threads)}")


def _sample(con, where: Where, starts: list[float], fraction: float, seed: int) -> tuple[int, list[np.ndarray]]:
    """(rows read, for each window [start, where.t) the speeds of the read rows in it) for one SYSTEM
    sample of the table at ``fraction`` (at 1 the whole table): windows sampled at the same fraction
    share one sample.

    Two queries on the same sample (one thread, one seed: the same vectors; tests/analytics checks
    it): a bare count(*), which DuckDB answers from the sampled vectors' sizes, and the window's rows,
    filtered in the scan; cheaper together than one pass that counts and filters every row."""
    clause = "" if fraction >= 1 else f"TABLESAMPLE SYSTEM ({100 * fraction:.6f} PERCENT) REPEATABLE ({seed})"
    n = scalar(con, f"SELECT count(*) FROM {TABLE} {clause}")
    # literals, quoted, rather than parameters: binding costs DuckDB ~0.5 ms a query, a quarter of this one
    rows = con.execute(f"SELECT t, speed FROM {TABLE} {clause} WHERE intersection = {_quoted(where.intersection)} "
                       f"AND approach = {_quoted(where.approach)} AND t >= {float(min(starts))!r} "
                       f"AND t < {float(where.t)!r}").fetchnumpy()
    t, speed = np.asarray(rows["t"], dtype=float), np.asarray(rows["speed"], dtype=float)
    return int(n), [speed[t >= start] for start in starts]


def _quoted(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _group_estimates(group: str, n: int, speeds: np.ndarray, rows: int, hz: float) -> list[Estimate]:
    """The window's features from one sample: vehicles in view (a count), then its mean speed and (for
    the hour) its stopped share."""
    whole = n == rows
    m = speeds.size
    hits = np.zeros(n, dtype=bool)
    hits[:m] = True
    counted = estimators.count(hits, rows)
    scale = SPAN[group] * hz
    out = [Estimate(counted.value / scale, counted.stderr / scale, counted.n, counted.population)]
    # the window's rows were sampled at the table's fraction n/rows, so the finite-population
    # correction is sqrt(1 - n/rows) whatever the window's (unknown) size: give the mean the size
    # that makes it so, m·rows/n, at least one more than the m rows it has while some are unread
    population = m if whole else max(m + 1, round(m * rows / n))
    out.append(estimators.mean(speeds, population))
    if group == "hour":
        out.append(estimators.share(speeds < STOP_SPEED, population))
    return out


def exact(con, model: CongestionModel, where: Where, options: Options = Options(), *, checked: bool = False) -> Exact:
    """The prediction on the exact features (one aggregate over the table)."""
    options.check()
    if not checked:
        check_target(con, where)
    started = time.perf_counter()
    x = exact_features(con, where)
    value = _predict(model, options, x[None, :])[0]
    return Exact(where, float(value), tuple(float(v) for v in x), time.perf_counter() - started)


def approximate(con, model: CongestionModel, where: Where, options: Options = Options(), *,
                checked: bool = False) -> Approx:
    """The prediction on sampled features, sampled until the rule holds (see the module docstring)."""
    rule = options.rule()
    options.check()
    if not checked:
        check_target(con, where)
    started = time.perf_counter()
    # the table's size from the store's catalog (exact: rebuilt by every write), not a count over it
    rows, hz = con.execute("SELECT (SELECT sum(rows) FROM approaches), (SELECT CAST(value AS DOUBLE) FROM store_info "
                           "WHERE key = 'hz')").fetchall()[0]
    rows = int(rows)
    first = min(1.0, max(options.initial, MIN_VECTORS * VECTOR / rows))
    fraction = {g: first for g in GROUPS}
    samples: dict[str, tuple[int, np.ndarray]] = {}
    read = 0
    rounds = tests = 0
    s, c = time_of_day(where.t)
    clock = [Estimate(float(s), 0.0, 1, 1), Estimate(float(c), 0.0, 1, 1)]
    model_fn = (lambda x: _predict(model, options, x))
    with _one_thread(con):
        while True:
            rounds += 1
            stale = [g for g in GROUPS if g not in samples]
            for share in sorted({fraction[g] for g in stale}):
                together = [g for g in stale if fraction[g] == share]
                seed = (options.seed * 1_000_003 + rounds * 2 + (together[0] == "recent")) % 2_147_483_647
                n, speeds = _sample(con, where, [where.t - SPAN[g] for g in together], share, seed)
                read += n
                samples.update({g: (n, v) for g, v in zip(together, speeds)})
            if any(samples[g][1].size < MIN_ROWS and fraction[g] >= 1 for g in GROUPS):
                raise no_traffic(where, samples["recent"][1].size)
            thin = [g for g in GROUPS if samples[g][1].size < MIN_ROWS and fraction[g] < 1]
            if thin:  # too few rows in the window for a mean: read more of it before anything else
                for g in thin:
                    fraction[g] = min(1.0, fraction[g] * options.growth)
                    del samples[g]
                continue
            estimates: list[Estimate] = []
            for g in GROUPS:
                estimates += _group_estimates(g, *samples[g], rows, hz)
            estimates += clock
            spread = propagate(model_fn, estimates, draws=options.draws, seed=options.seed)
            tests += 1
            decision = _spent(rule, tests).decide(spread.outputs, spread.point)
            open_ = [g for g in GROUPS if fraction[g] < 1]
            if decision.stop or not open_:
                return Approx(where, spread.point, decision.confidence, not open_, dict(fraction), read / rows,
                              rounds, time.perf_counter() - started,
                              {name: (e.value, e.stderr) for name, e in zip(NAMES, estimates)}, decision.reason)
            # the cost of a feature's next step: its window's next sample, in rows
            costs = [fraction[GROUP_OF[k]] * options.growth if k in GROUP_OF else 1.0 for k in range(len(NAMES))]
            ranked = prioritize(model_fn, estimates, costs, base=options.base, seed=options.seed)
            score = {g: sum(p.priority for p in ranked if p.feature in GROUPS[g]) for g in open_}
            best = max(open_, key=lambda g: score[g])
            chosen = [best] if score[best] > 0 else open_
            for g in chosen:
                grown = fraction[g] * options.growth
                # past half the table a sample saves little over reading the window whole, which is exact
                fraction[g] = 1.0 if grown >= 0.5 else grown
                del samples[g]


def _spent(rule: StopRule, k: int) -> StopRule:
    """The rule for the k-th check (k = 1, 2, ...): τ_k = 1 - (1 - τ)/2^k. A check stops on a wrong
    answer with chance at most about 1 - τ_k, so over all checks the chance of a wrong stop is at
    most (1 - τ)(1/2 + 1/4 + ...) < 1 - τ (a union bound: it holds however the checks' samples
    overlap). Checking every round at τ itself lets those chances add up past 1 - τ for an answer
    near the model's boundary, which is checked many times (measured: 0.825 at τ = 0.9 for the
    hardest targets). k is capped at 40, where τ_k is still below 1 in floating point."""
    return StopRule(1 - (1 - rule.tau) / 2 ** min(k, 40), rule.delta, rule.kind)


def _predict(model: CongestionModel, options: Options, x: np.ndarray) -> np.ndarray:
    return model.classify(x) if options.delta is None else model.probability(x)
