"""The congestion query: the sampled features' standard errors match their spread over samples, the
approximate answer is the exact one at τ over repeated seeds (near the decision boundary too), a
whole read is exact, a seed repeats, and bad options are refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jellybean.analytics import features, query
from jellybean.analytics.errors import AnalyticsError
from jellybean.analytics.features import NAMES, Where
from jellybean.analytics.model import CongestionModel
from jellybean.analytics.store import hz_of, scalar


@pytest.fixture()
def con(analytics_con):
    """The shared small store (tests/conftest.py), by a short name."""
    return analytics_con


@pytest.fixture(scope="module")
def model():
    return CongestionModel()


def test_the_sampled_features_stderrs_match_their_spread_and_they_are_unbiased(con):
    grid = features.grid(con)
    busy = np.flatnonzero((grid["features"][:, 2] > 0.2) & (grid["features"][:, 2] < 0.8))  # some stopped
    k = busy[np.argmax(grid["features"][busy, 0])]
    where = Where(str(grid["intersection"][k]), str(grid["approach"][k]), float(grid["t"][k]))
    exact = features.exact(con, where)
    rows, hz = scalar(con, "SELECT count(*) FROM observations"), hz_of(con)
    values, stderrs = [], []
    for seed in range(60):
        with query._one_thread(con):
            n, (hour, recent) = query._sample(con, where, [where.start, where.recent], 0.2, seed)
        estimates = query._group_estimates("hour", n, hour, rows, hz) + query._group_estimates("recent", n, recent,
                                                                                                rows, hz)
        values.append([e.value for e in estimates])
        stderrs.append([e.stderr for e in estimates])
    values, stderrs = np.array(values), np.array(stderrs)
    spread, claimed = values.std(axis=0, ddof=1), stderrs.mean(axis=0)
    # 60 samples estimate an sd to ±9 % (1/√(2·59)); SYSTEM samples of 2048-row vectors of a shuffled
    # table are simple random samples, so the closed-form stderrs must agree within 1.35×
    assert np.all(claimed > 0)
    assert np.all((spread / claimed > 1 / 1.35) & (spread / claimed < 1.35)), spread / claimed
    # unbiased: the mean of 60 estimates is within 4 of its standard errors of the exact feature
    assert np.all(np.abs(values.mean(axis=0) - exact[:5]) <= 4 * claimed / math.sqrt(60)), (values.mean(axis=0), exact)


def test_the_answer_is_the_exact_one_at_tau_over_repeated_seeds_near_the_boundary_too(con, model):
    grid = features.grid(con)
    p = model.probability(grid["features"])
    # the four targets nearest the decision boundary, and two at random
    picks = list(np.argsort(np.abs(p - 0.5))[:4]) + list(np.random.default_rng(1).choice(p.size, 2, replace=False))
    hard = set(picks[:4])
    tau, seeds = 0.9, 20
    agree, read = [], []
    for k in picks:
        where = Where(str(grid["intersection"][k]), str(grid["approach"][k]), float(grid["t"][k]))
        truth = query.exact(con, model, where).prediction
        for seed in range(seeds):
            result = query.approximate(con, model, where, query.Options(tau=tau, seed=seed, draws=256, base=64),
                                       checked=True)
            agree.append(result.prediction == truth)
            if k not in hard:
                read.append(result.read)
            assert result.confidence >= tau or result.exact
    runs = len(agree)
    bar = tau - 3 * math.sqrt(tau * (1 - tau) / runs)   # τ less 3 binomial standard errors: 0.818
    print(f"coverage {np.mean(agree):.3f} of {runs}, median read {np.median(read):.3f}")
    assert np.mean(agree) >= bar, f"{np.mean(agree):.3f} of {runs} answers are the exact one; τ={tau} allows {bar:.3f}"
    assert np.median(read) < 0.5                          # away from the boundary it reads well under the table


def test_the_probability_is_within_delta_at_tau(con, model):
    where = Where("I01", "N", 7.5 * 3600)
    truth = query.exact(con, model, where, query.Options(delta=0.05)).prediction
    results = [query.approximate(con, model, where, query.Options(tau=0.9, delta=0.05, seed=s, draws=256, base=64),
                                 checked=True)
               for s in range(20)]
    within = np.mean([abs(r.prediction - truth) <= 0.05 for r in results])
    assert within >= 0.9 - 3 * math.sqrt(0.9 * 0.1 / 20)


def test_reading_the_whole_table_is_the_exact_query(con, model):
    where = Where("I01", "W", 17.5 * 3600)
    exact = query.exact(con, model, where, query.Options(delta=0.0))
    result = query.approximate(con, model, where, query.Options(tau=0.5, delta=0.0, initial=1.0), checked=True)
    assert result.exact and result.fractions == {"hour": 1.0, "recent": 1.0}
    assert result.prediction == pytest.approx(exact.prediction, abs=1e-6)
    assert [result.estimates[n][0] for n in NAMES] == pytest.approx(list(exact.features), rel=1e-9)
    assert all(result.estimates[n][1] == 0 for n in NAMES)


def test_a_seed_repeats_the_answer_and_the_samples(con, model):
    where = Where("I01", "E", 12 * 3600)
    first = query.approximate(con, model, where, query.Options(seed=5))
    again = query.approximate(con, model, where, query.Options(seed=5))
    assert (first.prediction, first.estimates, first.read) == (again.prediction, again.estimates, again.read)
    # two queries on one sample (one thread, one seed) see the same vectors: the count's n and the rows agree
    with query._one_thread(con):
        n, (speeds,) = query._sample(con, where, [where.start], 0.1, 17)
        one_pass = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE intersection = 'I01' AND approach = 'E' AND t >= ? AND t < ?) "
            "FROM observations TABLESAMPLE SYSTEM (10 PERCENT) REPEATABLE (17)", [where.start, where.t]).fetchall()[0]
    assert (n, speeds.size) == one_pass and speeds.size > 0


@pytest.mark.parametrize(("options", "words"), [
    (query.Options(tau=1.0), "--tau 1.0"), (query.Options(tau=0.0), "--tau 0.0"),
    (query.Options(delta=math.nan), "--delta nan"), (query.Options(delta=math.inf), "--delta inf"),
    (query.Options(delta=-0.1), "--delta -0.1"), (query.Options(initial=0.0), "--initial"),
    (query.Options(growth=1.0), "--growth"),
])
def test_bad_options_are_named(con, model, options, words):
    with pytest.raises(AnalyticsError, match=words.replace("(", r"\(")):
        query.approximate(con, model, Where("I01", "N", 40000.0), options)


def test_the_rule_gets_stricter_each_check_and_its_errors_add_up_to_less_than_one_minus_tau():
    from jellybean.approx.stopping import StopRule

    rule = StopRule(0.9, 0.0, "classifier")
    taus = [query._spent(rule, k).tau for k in range(1, 41)]   # a query doubles a sample per check: < 40
    assert taus[0] == pytest.approx(0.95) and all(a < b < 1 for a, b in zip(taus, taus[1:]))
    assert sum(1 - t for t in taus) < 1 - 0.9
    assert query._spent(rule, 500).tau < 1                     # capped: a StopRule needs τ < 1
    assert query._spent(StopRule(0.9, 0.05), 3).delta == 0.05
