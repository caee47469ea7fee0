"""The stopping rule: its confidence on known outputs, its validation, and its coverage over repeated
samples from a known population: when it says stop at τ, the prediction is within δ of the exact
one (the same class, for a classifier) in at least τ of the cases, less a sampling allowance."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jellybean.approx.errors import ApproxError
from jellybean.approx.estimators import Estimate, mean
from jellybean.approx.propagate import propagate
from jellybean.approx.stopping import Decision, StopRule

PROPERTY = settings(max_examples=60, derandomize=True, database=None, deadline=None)

# A skewed population with a known mean, sampled again and again; a sample is read in growing prefixes
# of a random order (sampling without replacement), as the loop reads it.
POPULATION = np.random.default_rng(2024).gamma(2.0, 3.0, size=20_000)
EXACT_MEAN = float(POPULATION.mean())
REPEATS = 200
TAU = 0.95
# τ less 3 binomial standard errors of a share estimated from REPEATS cases: 0.95 - 0.046 = 0.904
BAR = TAU - 3 * math.sqrt(TAU * (1 - TAU) / REPEATS)


def sizes() -> list[int]:
    out, n = [], 200
    while n < POPULATION.size:
        out.append(n)
        n = math.ceil(n * 1.1)  # small steps, so the rule stops near its edge, not far past it
    return out + [POPULATION.size]


def coverage(model: Callable[[np.ndarray], np.ndarray], rule: StopRule, close: Callable[[float, float], bool],
             shrink: float = 1.0) -> float:
    """The share of repeats whose prediction, when the rule first says stop, is close to the exact one.
    ``shrink`` divides the stderr before propagation: an overconfident rule, to show the bar can fail."""
    exact = float(model(np.array([[EXACT_MEAN]]))[0])
    hits = 0
    for repeat in range(REPEATS):
        order = np.random.default_rng(repeat).permutation(POPULATION.size)
        for n in sizes():
            estimate = mean(POPULATION[order[:n]], POPULATION.size)
            if shrink != 1.0:
                estimate = Estimate(estimate.value, estimate.stderr / shrink, estimate.n, estimate.population)
            spread = propagate(model, [estimate], draws=256, seed=repeat)
            if rule.decide(spread.outputs, spread.point).stop:
                hits += close(spread.point, exact)
                break
    return hits / REPEATS


def affine(rows: np.ndarray) -> np.ndarray:
    return 2.0 * rows[:, 0] + 1.0


def threshold(rows: np.ndarray) -> np.ndarray:
    return (rows[:, 0] > EXACT_MEAN + 0.25).astype(int)


def test_a_regression_rule_covers_the_exact_prediction_at_tau():
    rule = StopRule(TAU, delta=0.5)
    within = coverage(affine, rule, lambda approx, exact: abs(approx - exact) <= rule.delta)
    assert within >= BAR, f"{within:.3f} of {REPEATS} stops within δ; τ={TAU} allows down to {BAR:.3f}"
    # the bar has teeth: the same rule fed a third of the uncertainty stops too early and misses it
    overconfident = coverage(affine, rule, lambda approx, exact: abs(approx - exact) <= rule.delta, shrink=3.0)
    assert overconfident < BAR


def test_a_classifier_rule_keeps_the_exact_class_at_tau():
    rule = StopRule(TAU, kind="classifier")
    same = coverage(threshold, rule, lambda approx, exact: approx == exact)
    assert same >= BAR, f"{same:.3f} of {REPEATS} stops kept the class; τ={TAU} allows down to {BAR:.3f}"
    assert coverage(threshold, rule, lambda approx, exact: approx == exact, shrink=4.0) < BAR


def test_the_confidence_is_the_share_of_draws_within_delta_inclusive():
    outputs = np.array([0.0, 0.5, 1.0, 2.0])
    decision = StopRule(0.75, delta=1.0).decide(outputs, 0.0)
    assert decision == Decision(True, 0.75, 4, decision.reason)
    assert decision.reason.startswith("stop: 75.0% of 4 draws are within δ=1")
    assert not StopRule(0.76, delta=1.0).decide(outputs, 0.0).stop
    assert StopRule(0.5, delta=0.0).decide(np.full(8, 3.0), 3.0).confidence == 1.0


def test_a_classifier_counts_the_draws_that_keep_the_class():
    decision = StopRule(0.9, kind="classifier").decide(np.array([1, 1, 0, 1, 1, 1, 1, 1, 1, 1]), 1)
    assert decision.confidence == 0.9 and decision.stop
    assert "predict class 1" in decision.reason
    refused = StopRule(0.95, kind="classifier").decide(np.array([2, 2, 0, 1]), 2)
    assert refused.confidence == 0.5 and not refused.stop and refused.reason.startswith("continue")
    with pytest.raises(ApproxError, match="classes encoded as integers"):
        StopRule(0.9, kind="classifier").decide(np.array([0.2, 0.7]), 0.0)


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"tau": 0.0}, ["StopRule.tau 0.0", "strictly between 0 and 1"]),
    ({"tau": 1.0}, ["StopRule.tau 1.0"]),
    ({"tau": math.nan}, ["StopRule.tau nan"]),
    ({"tau": True}, ["StopRule.tau True"]),
    ({"tau": 0.9, "delta": -0.1}, ["StopRule.delta -0.1", ">= 0"]),
    ({"tau": 0.9, "delta": math.inf}, ["StopRule.delta inf"]),
    ({"tau": 0.9, "kind": "ranking"}, ["StopRule.kind 'ranking'", "regression, classifier"]),
    ({"tau": 0.9, "delta": 0.5, "kind": "classifier"}, ["delta is unused", "leave it 0"]),
])
def test_a_bad_rule_names_the_field_and_the_fix(kwargs, words):
    with pytest.raises(ApproxError) as caught:
        StopRule(**kwargs)
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize(("outputs", "point", "words"), [
    (np.array([]), 0.0, ["non-empty 1-d"]),
    (np.ones((2, 2)), 0.0, ["shape (2, 2)"]),
    (np.array([1.0, math.nan]), 0.0, ["non-finite"]),
    (np.array([1.0, 2.0]), math.inf, ["point inf"]),
])
def test_bad_outputs_are_clear_errors(outputs, point, words):
    with pytest.raises(ApproxError) as caught:
        StopRule(0.9, 1.0).decide(outputs, point)
    for word in words:
        assert word in str(caught.value)


@PROPERTY
@given(outputs=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50), point=st.floats(-1e6, 1e6),
       delta=st.floats(0, 1e6), wider=st.floats(0, 1e6), tau=st.floats(0.01, 0.99))
def test_the_confidence_grows_with_delta_and_stop_means_confidence_at_least_tau(outputs, point, delta, wider, tau):
    narrow = StopRule(tau, delta).decide(np.array(outputs), point)
    broad = StopRule(tau, delta + wider).decide(np.array(outputs), point)
    assert 0 <= narrow.confidence <= broad.confidence <= 1
    assert narrow.stop == (narrow.confidence >= tau)
