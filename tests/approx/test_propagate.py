"""QMC propagation against closed forms: a linear model's outputs have mean a·x and sd √(Σ a_i² se_i²);
exact features stay fixed; one model call; seeded; clear errors on bad models and sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jellybean.approx.errors import ApproxError
from jellybean.approx.estimators import Estimate
from jellybean.approx.propagate import propagate

PROPERTY = settings(max_examples=40, derandomize=True, database=None, deadline=None)

COEFFICIENTS = np.array([2.0, -1.0, 0.5, 3.0])
ESTIMATES = [Estimate(1.0, 0.3, 50), Estimate(-4.0, 1.2, 50), Estimate(10.0, 2.0, 50), Estimate(7.0, 0.0, 20, 20)]


def linear(rows: np.ndarray) -> np.ndarray:
    return rows @ COEFFICIENTS


def test_a_linear_model_propagates_to_mean_a_dot_x_and_sd_root_sum_of_squares():
    draws = 4096
    spread = propagate(linear, ESTIMATES, draws=draws, seed=3)
    values = np.array([e.value for e in ESTIMATES])
    stderrs = np.array([e.stderr for e in ESTIMATES])
    sd = math.sqrt(np.sum(COEFFICIENTS ** 2 * stderrs ** 2))
    assert spread.point == pytest.approx(COEFFICIENTS @ values, rel=1e-12)
    assert spread.outputs.shape == (draws,)
    # random draws would put the mean within 3·sd/√draws and the sd within 3/√(2·draws) (relative);
    # scrambled Sobol points do better, so these Monte Carlo allowances are generous but still fail
    # for a wrong scale (a variance used as an sd, a missing coefficient)
    assert abs(spread.outputs.mean() - spread.point) <= 3 * sd / math.sqrt(draws)
    assert abs(spread.outputs.std(ddof=1) / sd - 1) <= 3 / math.sqrt(2 * draws)


def test_each_feature_is_normal_around_its_estimate_with_its_stderr():
    spread = propagate(linear, ESTIMATES, draws=2048, seed=1)
    for k, estimate in enumerate(ESTIMATES[:3]):
        column = spread.inputs[:, k]
        assert abs(column.mean() - estimate.value) <= 3 * estimate.stderr / math.sqrt(2048)
        assert abs(column.std(ddof=1) / estimate.stderr - 1) <= 3 / math.sqrt(2 * 2048)
        # the share within one sd is the normal's 68.27 %, to within 3 binomial standard errors
        within = np.mean(np.abs(column - estimate.value) <= estimate.stderr)
        assert abs(within - 0.6827) <= 3 * math.sqrt(0.6827 * 0.3173 / 2048)


def test_an_exact_feature_stays_fixed_and_no_uncertainty_means_every_output_is_the_point():
    spread = propagate(linear, ESTIMATES, draws=256)
    assert np.all(spread.inputs[:, 3] == 7.0)
    exact = [Estimate(e.value, 0.0, 5, 5) for e in ESTIMATES]
    settled = propagate(linear, exact, draws=64)
    assert np.all(settled.outputs == settled.point)


def test_the_model_is_called_once_with_the_draws_and_the_point():
    calls: list[tuple[int, ...]] = []

    def model(rows: np.ndarray) -> np.ndarray:
        calls.append(rows.shape)
        return rows.sum(axis=1, keepdims=True)  # a column is accepted too

    spread = propagate(model, ESTIMATES, draws=128)
    assert calls == [(129, 4)]
    assert spread.point == pytest.approx(sum(e.value for e in ESTIMATES))


def test_the_draws_are_seeded_and_read_only():
    first, again = propagate(linear, ESTIMATES, seed=11), propagate(linear, ESTIMATES, seed=11)
    assert np.array_equal(first.outputs, again.outputs)
    assert not np.array_equal(first.outputs, propagate(linear, ESTIMATES, seed=12).outputs)
    with pytest.raises(ValueError):
        first.outputs[0] = 0.0
    with pytest.raises(ValueError):
        first.inputs[0, 0] = 0.0


@pytest.mark.parametrize(("model", "draws", "words"), [
    (linear, 1000, ["draws 1000", "power of two"]),
    (linear, 1, ["draws 1"]),
    (linear, True, ["draws True"]),
    (lambda rows: np.where(rows[:, 1] > -4.0, np.inf, 0.0), 64, ["non-finite", "row", "clip"]),
    (lambda rows: rows, 64, ["shape (65, 4)", "one number per row"]),
    (lambda rows: np.array(["cat"] * len(rows)), 64, ["dtype", "integers"]),
])
def test_bad_models_and_sizes_are_clear_errors(model, draws, words):
    with pytest.raises(ApproxError) as caught:
        propagate(model, ESTIMATES, draws=draws)
    for word in words:
        assert word in str(caught.value)


def test_estimates_must_be_estimates():
    with pytest.raises(ApproxError, match="estimates is empty"):
        propagate(linear, [])
    with pytest.raises(ApproxError, match=r"estimates\[1\] is a float"):
        propagate(linear, [ESTIMATES[0], 2.0])


@PROPERTY
@given(coefficient=st.floats(-100, 100), value=st.floats(-1e3, 1e3), stderr=st.floats(1e-3, 1e2),
       m=st.integers(6, 10), seed=st.integers(0, 2 ** 16))
def test_a_scrambled_sobol_sample_is_balanced_at_any_power_of_two(coefficient, value, stderr, m, seed):
    # each 1/2^m stratum of the unit interval holds one Sobol point, so the two middle draws come from
    # within 1/2^m of ½, and the median is within √(2π)·stderr/2^m of the value (the normal inverse
    # CDF's slope at ½ is √(2π)); twice that allows for the curvature. Random draws would stray by
    # about 1.25·stderr/√(2^m), many times more.
    spread = propagate(lambda rows: coefficient * rows[:, 0], [Estimate(value, stderr, 10)], draws=2 ** m, seed=seed)
    column = spread.inputs[:, 0]
    band = 2 * math.sqrt(2 * math.pi) * stderr / 2 ** m
    assert abs(np.median(column) - value) <= band
    assert np.allclose(spread.outputs, coefficient * column)
