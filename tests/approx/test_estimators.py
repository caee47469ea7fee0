"""Estimators against closed forms: the stderr of a mean on a known distribution, the finite-population
correction (exact over every sample of a small population, and 0 at n == N), sum and count scaling,
the bootstrap, and errors that name the field and the fix."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jellybean.approx.errors import ApproxError
from jellybean.approx.estimators import Estimate, bootstrap, count, fpc, mean, total
from jellybean.errors import JellyBeanError

# derandomized without a database, as the other property tests: every run sees the same cases
PROPERTY = settings(max_examples=60, derandomize=True, database=None, deadline=None)


def test_the_stderr_of_a_mean_is_sigma_over_root_n_and_matches_the_spread_of_repeated_means():
    sigma, n, repeats = 3.0, 400, 2000
    samples = np.random.default_rng(7).normal(10.0, sigma, size=(repeats, n))
    estimates = [mean(row) for row in samples]
    stderrs = np.array([e.stderr for e in estimates])
    closed_form = sigma / math.sqrt(n)

    # each stderr is s/√n; s has relative sd ≈ 1/√(2(n-1)), so the average over the repeats is within
    # 4 of its standard errors of σ/√n (E[s] = c4·σ, c4 = 1 - 1/(4n) + ..., a 0.06 % bias, counted too)
    allowance = 4 * closed_form / math.sqrt(2 * (n - 1)) / math.sqrt(repeats) + closed_form / (4 * n)
    assert abs(stderrs.mean() - closed_form) <= allowance

    # the means themselves scatter by σ/√n: their sd over the repeats has relative sd ≈ 1/√(2(R-1))
    spread = np.std([e.value for e in estimates], ddof=1)
    assert abs(spread / closed_form - 1) <= 4 / math.sqrt(2 * (repeats - 1))


def test_the_correction_factor_is_exactly_root_of_n_left_over_n():
    assert fpc(30, 100) == math.sqrt(70 / 100)
    assert fpc(1, 1) == 0.0
    assert fpc(100, 100) == 0.0
    assert fpc(5, None) == 1.0
    sample = np.random.default_rng(1).normal(size=30)
    assert mean(sample, 100).stderr == pytest.approx(mean(sample).stderr * math.sqrt(0.7), rel=1e-12)


def test_the_corrected_variance_is_unbiased_over_every_sample_of_a_small_population():
    # every sample of n = 3 out of N = 7 without replacement: the exact variance of the sample mean is
    # the textbook σ²/n · (N-n)/(N-1) (σ: the population's sd, ddof=0), and the average of the
    # estimated variances stderr² over all those samples equals it, which a factor of (N-n)/(N-1)
    # with the sample's s would miss by N/(N-1)
    population = np.array([2.0, 3.5, 7.0, 1.0, 9.5, 4.0, 6.0])
    big_n, n = population.size, 3
    samples = [population[list(c)] for c in itertools.combinations(range(big_n), n)]
    estimates = [mean(s, big_n) for s in samples]
    true_variance = np.var([e.value for e in estimates])
    assert true_variance == pytest.approx(population.var() / n * (big_n - n) / (big_n - 1), rel=1e-12)
    assert np.mean([e.stderr ** 2 for e in estimates]) == pytest.approx(true_variance, rel=1e-12)
    assert np.mean([e.value for e in estimates]) == pytest.approx(population.mean(), rel=1e-12)


def test_the_whole_population_gives_an_exact_estimate_with_stderr_zero():
    column = np.random.default_rng(2).gamma(2.0, size=50)
    for estimate in (mean(column, 50), total(column, 50), count(column > 2, 50),
                     bootstrap(column, np.median, population=50)):
        assert estimate.stderr == 0.0 and estimate.exact
    assert total(column, 50).value == pytest.approx(column.sum(), rel=1e-12)
    assert count(column > 2, 50).value == pytest.approx(np.count_nonzero(column > 2), rel=1e-12)
    assert mean(np.array([4.0]), 1) == Estimate(4.0, 0.0, 1, 1)


def test_sum_and_count_scale_the_mean_and_the_share_to_the_population():
    sample = np.random.default_rng(3).exponential(2.0, size=80)
    big_n = 1000
    per_record = mean(sample, big_n)
    summed = total(sample, big_n)
    assert summed.value == pytest.approx(big_n * sample.mean(), rel=1e-12)
    assert summed.stderr == pytest.approx(big_n * per_record.stderr, rel=1e-12)

    matches = sample > 1.5
    share = matches.mean()
    counted = count(matches, big_n)
    assert counted.value == pytest.approx(big_n * share, rel=1e-12)
    # the 0/1 indicator's s² is n·p(1-p)/(n-1)
    assert counted.stderr == pytest.approx(
        big_n * math.sqrt(share * (1 - share) / (sample.size - 1) * (big_n - sample.size) / big_n), rel=1e-12)
    assert count(sample, big_n, where=lambda v: v > 1.5) == counted


def test_the_bootstrap_of_a_mean_matches_its_closed_form_and_is_seeded():
    sample = np.random.default_rng(4).normal(0.0, 2.0, size=200)
    estimate = bootstrap(sample, np.mean, resamples=2000, seed=5)
    # the bootstrap's sd of the mean is the plug-in σ̂/√n (ddof=0); 2000 resamples estimate an sd to a
    # relative sd of 1/√(2·2000) ≈ 1.6 %, so 4 of those is the allowance
    closed_form = sample.std(ddof=0) / math.sqrt(sample.size)
    assert abs(estimate.stderr / closed_form - 1) <= 4 / math.sqrt(2 * 2000)
    assert estimate.value == pytest.approx(sample.mean(), rel=1e-12)
    assert bootstrap(sample, np.mean, resamples=2000, seed=5) == estimate
    assert bootstrap(sample, np.mean, resamples=2000, seed=6) != estimate
    corrected = bootstrap(sample, np.mean, population=400, resamples=2000, seed=5)
    assert corrected.stderr == pytest.approx(estimate.stderr * math.sqrt(200 / 400), rel=1e-12)


def test_the_bootstrap_takes_any_statistic_even_one_without_an_axis_argument():
    sample = np.random.default_rng(8).normal(size=120)
    estimate = bootstrap(sample, lambda v: float(np.percentile(v, 90)), resamples=200)
    assert estimate.value == pytest.approx(np.percentile(sample, 90))
    assert 0 < estimate.stderr < 1


@pytest.mark.parametrize(("call", "words"), [
    (lambda: mean([]), ["sample is empty"]),
    (lambda: mean([1.0, math.nan, 2.0]), ["non-finite", "index 1"]),
    (lambda: mean([1.0, math.inf]), ["non-finite", "drop or impute"]),
    (lambda: mean([[1.0, 2.0]]), ["1-d"]),
    (lambda: mean(["a", "b"]), ["not numeric"]),
    (lambda: mean([1.0, 2.0, 3.0], population=2), ["population 2", "smaller than the sample"]),
    (lambda: mean([1.0, 2.0], population=0), ["population 0", "integer >= 1"]),
    (lambda: mean([1.0, 2.0], population=True), ["population True"]),
    (lambda: mean([1.0], population=10), ["at least 2"]),
    (lambda: total([1.0, 2.0], population=None), ["population is None", "population=N"]),
    (lambda: count([1.0, 0.0], population=5), ["boolean", "where=predicate"]),
    (lambda: count([True, False], population=None), ["population is None"]),
    (lambda: count([1.0, 0.0], population=5, where=lambda v: v * 2), ["predicate must return"]),
    (lambda: bootstrap([1.0, 2.0, 3.0], np.mean, resamples=3), ["resamples 3"]),
    (lambda: bootstrap([1.0, 2.0, 3.0], lambda v: math.nan), ["statistic", "finite"]),
    (lambda: fpc(0, 5), ["n 0"]),
    (lambda: Estimate(math.nan, 1.0, 3), ["Estimate.value"]),
    (lambda: Estimate(1.0, -1.0, 3), ["Estimate.stderr", ">= 0"]),
    (lambda: Estimate(1.0, 0.5, 3, 3), ["whole population", "stderr=0"]),
    (lambda: Estimate(1.0, 0.5, 0), ["Estimate.n"]),
])
def test_bad_input_names_the_field_and_the_fix(call, words):
    with pytest.raises(ApproxError) as caught:
        call()
    assert isinstance(caught.value, JellyBeanError)
    for word in words:
        assert word in str(caught.value)


@PROPERTY
@given(sample=st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=40),
       extra=st.integers(0, 1000), shift=st.floats(-1e3, 1e3))
def test_the_corrected_stderr_never_exceeds_the_uncorrected_and_ignores_a_shift(sample, extra, shift):
    values = np.array(sample)
    big_n = values.size + extra
    corrected, plain = mean(values, big_n), mean(values)
    assert 0 <= corrected.stderr <= plain.stderr
    assert values.min() - 1e-6 <= corrected.value <= values.max() + 1e-6
    if extra == 0:
        assert corrected.stderr == 0
    elif values.std(ddof=1) > 0:
        # A sample that varies has a positive stderr. (Varies as float64 sees it: a spread of 3e-199,
        # which Hypothesis found, squares to below the smallest float and its sd is exactly 0.)
        assert corrected.stderr > 0
    shifted = mean(values + shift, big_n)
    assert shifted.stderr == pytest.approx(corrected.stderr, rel=1e-6, abs=1e-6)


def test_a_sample_with_no_or_only_matches_gets_the_wilson_stderr_not_zero():
    from jellybean.approx.estimators import WILSON_Z, share

    for matches in (np.zeros(40, bool), np.ones(40, bool)):
        estimate = share(matches, 1000)
        assert estimate.value == float(matches[0])
        assert estimate.stderr == pytest.approx(WILSON_Z / (40 + WILSON_Z ** 2) * math.sqrt(960 / 1000), rel=1e-12)
        assert count(matches, 1000).stderr == pytest.approx(1000 * estimate.stderr, rel=1e-12)
    assert share(np.zeros(40, bool), 40).stderr == 0  # the whole population: exact
    # coverage: a share of 1 % sampled 50 at a time has no match in 60 % of samples; the Wilson stderr
    # keeps the truth within 2 stderrs in those samples, where the plug-in stderr 0 never does
    rng = np.random.default_rng(9)
    population = rng.random(20_000) < 0.01
    truth = population.mean()
    samples = [population[rng.choice(population.size, 50, replace=False)] for _ in range(400)]
    empty = [s for s in samples if not s.any()]
    assert len(empty) > 100
    assert all(abs(share(s, population.size).value - truth) <= 2 * share(s, population.size).stderr for s in empty)
