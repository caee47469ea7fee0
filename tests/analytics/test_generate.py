"""The history generator: its size, its daily shape (rush hours congest, nights do not), its random
order and its determinism."""

from __future__ import annotations

import numpy as np
import pytest

from jellybean.analytics import generate
from jellybean.analytics.errors import AnalyticsError

CFG = generate.config(intersections=2, days=2.0, hz=0.05, seed=3)


@pytest.fixture(scope="module")
def history():
    return generate.generate(CFG)


def test_size_and_columns_follow_the_latent_state(history):
    columns, hz = history
    n = columns["t"].size
    expected = generate.expected_rows(CFG)
    assert hz == 0.05
    assert abs(n - expected) <= 5 * np.sqrt(expected)             # a Poisson total
    assert set(columns["intersection"].categories) == {"I01", "I02"}
    assert set(columns["approach"].categories) == set(generate.APPROACHES)
    assert columns["t"].min() >= 0 and columns["t"].max() < 2 * 86400
    assert np.all(columns["speed"] >= 0) and np.all(columns["dwell"] >= 0)
    stopped = columns["speed"] < 1.0
    assert np.all(columns["dwell"][~stopped] == 0) and np.mean(columns["dwell"][stopped] > 0) > 0.99


def test_a_target_size_picks_the_rate():
    cfg = generate.config(intersections=1, days=0.5, rows=200_000, seed=1)
    columns, hz = generate.generate(cfg)
    assert abs(columns["t"].size - 200_000) <= 5 * np.sqrt(200_000)
    assert hz == pytest.approx(generate.rate_for(cfg))


def test_rush_hours_are_busy_and_slow_and_nights_quiet_and_free(history):
    columns, _ = history
    hour = (columns["t"] % 86400) // 3600
    speed = columns["speed"]
    night, am, pm, noon = (np.isin(hour, h) for h in ([2, 3, 4], [7, 8], [17, 18], [12, 13]))
    per_hour = lambda mask, hours: mask.sum() / hours                        # noqa: E731
    assert per_hour(am, 2) > 3 * per_hour(night, 3) and per_hour(pm, 2) > 3 * per_hour(night, 3)
    assert per_hour(noon, 2) > per_hour(night, 3)
    stopped = speed < 1.0
    assert stopped[am].mean() > 0.3 and stopped[pm].mean() > 0.3 and stopped[night].mean() < 0.01
    assert np.median(speed[night]) > 10 > np.median(speed[am])


def test_rows_come_in_random_order_and_a_seed_repeats_them(history):
    columns, _ = history
    t = columns["t"]
    assert abs(np.corrcoef(np.arange(t.size), t)[0, 1]) < 0.02
    again, _ = generate.generate(CFG)
    assert np.array_equal(again["t"], t) and np.array_equal(again["speed"], columns["speed"])
    other, _ = generate.generate(generate.config(intersections=2, days=2.0, hz=0.05, seed=4))
    assert other["t"].size != t.size or not np.array_equal(other["t"], t)


@pytest.mark.parametrize(("values", "words"), [
    (dict(hz=1.0, rows=5000), "exactly one of hz"),
    (dict(days=1.0), "exactly one of hz"),
    (dict(hz=0.0), "--hz"),
    (dict(hz=float("inf")), "--hz"),
    (dict(hz=1.0, intersections=0), "--intersections"),
    (dict(hz=1.0, days=-1.0), "--days"),
    (dict(hz=1.0, bogus=1), "--bogus"),
])
def test_bad_options_name_the_option(values, words):
    with pytest.raises(AnalyticsError, match=words):
        generate.config(**values)
