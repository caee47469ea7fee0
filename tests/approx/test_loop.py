"""Biathlon's loop on in-memory columns: it covers the exact prediction at τ over repeated runs, reads
more of the feature that matters, ends exact when δ is 0, never stalls on pure interactions, and
rejects bad features and shares with clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jellybean.approx.errors import ApproxError
from jellybean.approx.loop import ApproxResult, Feature, run_approx
from jellybean.approx.stopping import StopRule

RECORDS = 4000
_rng = np.random.default_rng(5)
SPEND = _rng.gamma(2.0, 3.0, size=RECORDS)  # a skewed column: its mean is a feature
LATE = _rng.normal(10.0, 5.0, size=RECORDS) > 12.0  # which records match: their count is a feature


def model(rows: np.ndarray) -> np.ndarray:
    return 2.0 * rows[:, 0] + 0.01 * rows[:, 1]


FEATURES = [Feature(SPEND, "mean"), Feature(LATE, "count", cost=2.0)]
EXACT = float(model(np.array([[SPEND.mean(), LATE.sum()]]))[0])


def test_the_loop_covers_the_exact_prediction_at_tau_over_repeated_runs():
    tau, delta, repeats = 0.9, 0.8, 100
    rule = StopRule(tau, delta)
    results = [run_approx(FEATURES, model, rule, step=0.05, draws=256, base=128, seed=s) for s in range(repeats)]
    within = np.mean([abs(r.prediction - EXACT) <= delta for r in results])
    bar = tau - 3 * math.sqrt(tau * (1 - tau) / repeats)  # τ less 3 binomial standard errors: 0.81
    assert within >= bar, f"{within:.2f} of {repeats} runs within δ; τ={tau} allows down to {bar:.2f}"
    # and it saved reading: on average well under all the records
    assert np.mean([r.fractions for r in results]) < 0.6
    assert all(r.confidence >= tau and not r.exact for r in results)


def test_a_run_is_seeded_and_reports_what_it_read():
    rule = StopRule(0.9, 0.8)
    result = run_approx(FEATURES, model, rule, step=0.05, draws=256, base=128, seed=3)
    assert result == run_approx(FEATURES, model, rule, step=0.05, draws=256, base=128, seed=3)
    assert isinstance(result, ApproxResult) and result.decision.stop
    assert [e.n for e in result.estimates] == [round(f * RECORDS) for f in result.fractions]
    assert result.iterations >= 2  # 5 % of the records is not enough for δ = 0.8 here


def test_the_feature_that_moves_the_output_is_read_more():
    # the same column twice, once weighted 10 and once 0.1: the heavy one's index is ~1
    columns = [Feature(SPEND, "mean"), Feature(SPEND[::-1].copy(), "mean")]
    result = run_approx(columns, lambda rows: 10 * rows[:, 0] + 0.1 * rows[:, 1], StopRule(0.9, 1.0),
                        step=0.05, draws=256, base=128)
    assert result.fractions[0] > 0.05 and result.fractions[1] == 0.05


def test_delta_zero_reads_everything_and_is_exact():
    small = [Feature(SPEND[:200], "total"), Feature(LATE[:200], "count"), Feature(SPEND[200:400], np.median)]
    result = run_approx(small, lambda rows: rows.sum(axis=1), StopRule(0.9, 0.0), initial=0.25, step=0.25,
                        draws=64, base=16)
    assert result.exact and result.fractions == (1.0, 1.0, 1.0) and result.confidence == 1.0
    truth = SPEND[:200].sum() + LATE[:200].sum() + np.median(SPEND[200:400])
    assert result.prediction == pytest.approx(truth, rel=1e-12)


def test_pure_interactions_do_not_stall_the_loop():
    # y = x0·x1 around (0, 0) has no first-order index; the loop reads more of both instead
    centred = np.random.default_rng(9).normal(0.0, 1.0, size=(2, 400))
    result = run_approx([Feature(centred[0]), Feature(centred[1])], lambda rows: rows[:, 0] * rows[:, 1],
                        StopRule(0.95, 1e-4), initial=0.1, step=0.3, draws=64, base=16)
    assert result.decision.stop or result.exact
    assert min(result.fractions) > 0.1


@pytest.mark.timeout(30)
def test_a_noisy_model_reads_everything_and_ends_exact_without_stopping():
    # with every feature certain the outputs still vary: the rule can never hold, no feature has an
    # index or a stderr, and the loop must still read on to the end rather than spin
    noise = np.random.default_rng(0)
    flat = [Feature(np.full(100, 3.0)), Feature(np.full(60, 1.0))]
    result = run_approx(flat, lambda rows: rows[:, 0] + noise.normal(size=len(rows)), StopRule(0.9, 0.1),
                        step=0.2, draws=64, base=16)
    assert result.exact and not result.decision.stop and result.fractions == (1.0, 1.0)


@pytest.mark.parametrize(("call", "words"), [
    (lambda: Feature(np.ones((2, 2))), ["Feature.values has shape (2, 2)"]),
    (lambda: Feature(np.array([])), ["non-empty 1-d"]),
    (lambda: Feature(SPEND, "median"), ["Feature.aggregate 'median'", "callable"]),
    (lambda: Feature(SPEND, cost=0.0), ["Feature.cost 0.0"]),
    (lambda: run_approx([], model, StopRule(0.9, 1.0)), ["features is empty"]),
    (lambda: run_approx(FEATURES, model, StopRule(0.9, 1.0), initial=0.0), ["initial 0.0", "(0, 1]"]),
    (lambda: run_approx(FEATURES, model, StopRule(0.9, 1.0), step=1.5), ["step 1.5"]),
])
def test_bad_features_and_shares_are_clear_errors(call, words):
    with pytest.raises(ApproxError) as caught:
        call()
    for word in words:
        assert word in str(caught.value)
