"""Sobol-based priority against closed forms: first-order indices of additive models (linear, and with
a square), 0 for pure interactions, exact features and constant models; the priority is the index per
unit cost; seeded; clear errors on bad costs and sizes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from jellybean.approx.errors import ApproxError
from jellybean.approx.estimators import Estimate
from jellybean.approx.priority import Priority, prioritize, sobol_indices

COEFFICIENTS = np.array([2.0, -1.0, 0.5, 4.0])
ESTIMATES = [Estimate(1.0, 0.3, 50), Estimate(-4.0, 1.2, 50), Estimate(10.0, 2.0, 50), Estimate(3.0, 0.0, 5, 5)]


def linear(rows: np.ndarray) -> np.ndarray:
    return rows @ COEFFICIENTS


def test_a_linear_model_has_indices_a_squared_se_squared_over_their_sum():
    stderrs = np.array([e.stderr for e in ESTIMATES])
    shares = COEFFICIENTS ** 2 * stderrs ** 2
    closed_form = shares / shares.sum()  # 0.129, 0.514, 0.357 and 0 for the exact feature
    # over 30 seeds SALib's estimates at base 1024 stray by at most 0.007 from these; 0.02 allows 3×
    # that and still catches a swapped or unnormalized index
    assert np.allclose(sobol_indices(linear, ESTIMATES, base=1024, seed=4), closed_form, atol=0.02)


def test_an_additive_square_has_the_indices_of_its_variance_shares():
    # y = x0² + 3·x1 with x0 ~ N(1, 0.5²), x1 ~ N(0, 0.2²): Var(x0²) = 4μ²s² + 2s⁴ = 1.125 and
    # Var(3·x1) = 0.36, so S1 = (0.758, 0.242) (over 30 seeds SALib strays by at most 0.017)
    estimates = [Estimate(1.0, 0.5, 10), Estimate(0.0, 0.2, 10)]
    indices = sobol_indices(lambda rows: rows[:, 0] ** 2 + 3 * rows[:, 1], estimates, base=1024, seed=2)
    assert np.allclose(indices, [1.125 / 1.485, 0.36 / 1.485], atol=0.05)


def test_a_pure_interaction_has_no_first_order_index():
    # y = x0·x1 around (0, 0): E[y | x0] = 0 for every x0, so both first-order indices are 0 (SALib's
    # noise, clipped at 0, stays below 0.04 over 30 seeds)
    estimates = [Estimate(0.0, 1.0, 10), Estimate(0.0, 2.0, 10)]
    indices = sobol_indices(lambda rows: rows[:, 0] * rows[:, 1], estimates, base=1024, seed=1)
    assert np.all(indices >= 0) and np.all(indices <= 0.1)


def test_the_priority_is_the_index_per_unit_cost_and_orders_the_features():
    plain = prioritize(linear, ESTIMATES, base=512, seed=3)
    assert [p.feature for p in plain] == [1, 2, 0, 3]
    costly = prioritize(linear, ESTIMATES, costs=[1.0, 10.0, 1.0, 1.0], base=512, seed=3)
    assert [p.feature for p in costly] == [2, 0, 1, 3]
    by_feature = {p.feature: p for p in costly}
    assert by_feature[1].priority == by_feature[1].index / 10.0
    assert by_feature[1].index == next(p.index for p in plain if p.feature == 1)
    assert by_feature[3] == Priority(3, 0.0, 1.0, 0.0)


def test_an_exact_feature_is_held_at_its_value_and_never_prioritized():
    seen: list[np.ndarray] = []

    def model(rows: np.ndarray) -> np.ndarray:
        seen.append(rows[:, 3].copy())
        return linear(rows)

    ranked = prioritize(model, ESTIMATES, base=64)
    assert len(seen) == 1 and np.all(seen[0] == 3.0)
    assert ranked[-1].feature == 3 and ranked[-1].priority == 0.0


def test_a_constant_model_or_all_exact_features_give_all_zero_without_warnings():
    calls = []

    def counted(rows: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        return np.full(len(rows), 7.0)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by a zero variance, no SALib warning
        assert np.array_equal(sobol_indices(counted, ESTIMATES, base=64), np.zeros(4))
        ranked = prioritize(counted, ESTIMATES, base=64)
        exact = [Estimate(e.value, 0.0, 5, 5) for e in ESTIMATES]
        assert np.array_equal(sobol_indices(counted, exact), np.zeros(4))
    assert [p.feature for p in ranked] == [0, 1, 2, 3] and all(p.priority == 0 for p in ranked)
    assert calls == [64 * (3 + 2)] * 2  # Saltelli's N·(d + 2) rows; no call when nothing is uncertain


def test_the_indices_are_seeded():
    first = sobol_indices(linear, ESTIMATES, base=128, seed=9)
    assert np.array_equal(first, sobol_indices(linear, ESTIMATES, base=128, seed=9))
    assert not np.array_equal(first, sobol_indices(linear, ESTIMATES, base=128, seed=10))


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"costs": [1.0, 1.0]}, ["costs has 2 entries for 4 features"]),
    ({"costs": [1.0, 0.0, 1.0, 1.0]}, ["costs[1] 0.0", "positive finite"]),
    ({"costs": [1.0, float("nan"), 1.0, 1.0]}, ["costs[1] nan"]),
    ({"base": 100}, ["base 100", "power of two"]),
])
def test_bad_costs_and_sizes_are_clear_errors(kwargs, words):
    with pytest.raises(ApproxError) as caught:
        prioritize(linear, ESTIMATES, **kwargs)
    for word in words:
        assert word in str(caught.value)
