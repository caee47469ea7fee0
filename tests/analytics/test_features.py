"""The congestion features: the SQL aggregate against numpy on the same rows, the training grid
against the single query, and the checks on the target."""

from __future__ import annotations

import numpy as np
import pytest

from jellybean.analytics import features
from jellybean.analytics.errors import AnalyticsError
from jellybean.analytics.features import Where


@pytest.fixture()
def con(analytics_con):
    """The shared small store (tests/conftest.py), by a short name."""
    return analytics_con


def _numpy_features(rows: dict, hz: float, where: Where) -> np.ndarray:
    mine = (rows["intersection"] == where.intersection) & (rows["approach"] == where.approach)
    hour = mine & (rows["t"] >= where.t - 3600) & (rows["t"] < where.t)
    recent = hour & (rows["t"] >= where.t - 900)
    speed = rows["speed"].astype(float)
    angle = 2 * np.pi * (where.t % 86400) / 86400
    return np.array([hour.sum() / (3600 * hz), speed[hour].mean(), (speed[hour] < 1).mean(),
                     recent.sum() / (900 * hz), speed[recent].mean(), np.sin(angle), np.cos(angle)])


@pytest.fixture(scope="module")
def all_rows(small_store):
    from jellybean.analytics import store

    con = store.connect(small_store)
    rows = con.execute("SELECT * FROM observations").fetchnumpy()
    hz = store.hz_of(con)
    con.close()
    return {k: np.asarray(v) for k, v in rows.items()}, hz


@pytest.mark.parametrize(("approach", "t"), [("N", 3 * 3600.0 + 17), ("S", 8.5 * 3600), ("W", 17.75 * 3600),
                                             ("E", 23 * 3600.0)])
def test_the_exact_features_are_numpys_on_the_same_rows(con, all_rows, approach, t):
    rows, hz = all_rows
    where = Where("I01", approach, t)
    assert features.exact(con, where) == pytest.approx(_numpy_features(rows, hz, where), rel=1e-6)


def test_the_training_grid_is_the_query_at_every_five_minutes(con, all_rows):
    grid = features.grid(con)
    n = grid["t"].size
    assert n > 4 * 250 and set(np.unique(grid["approach"])) == {"N", "E", "S", "W"}
    assert np.all(grid["t"] % 300 == 0) and np.all(np.isfinite(grid["features"]))
    rows, hz = all_rows
    for k in np.random.default_rng(0).choice(n, 6, replace=False):
        where = Where(str(grid["intersection"][k]), str(grid["approach"][k]), float(grid["t"][k]))
        assert grid["features"][k] == pytest.approx(features.exact(con, where), rel=1e-9)
        ahead = ((rows["intersection"] == where.intersection) & (rows["approach"] == where.approach)
                 & (rows["t"] >= where.t) & (rows["t"] < where.t + 300))
        next_speed = rows["speed"][ahead].astype(float).mean()
        assert grid["next_speed"][k] == pytest.approx(next_speed, rel=1e-6)
        assert grid["label"][k] == int(next_speed < features.CONGESTED_SPEED)
    # the generator's rush hours make congestion, its nights none
    hours = grid["t"] % 86400 / 3600
    assert grid["label"][(hours >= 7.5) & (hours < 9.5)].mean() > 0.2
    assert grid["label"][(hours >= 1) & (hours < 5)].mean() == 0


@pytest.mark.parametrize(("where", "words"), [
    (Where("I07", "N", 30000.0), ["no intersection 'I07'", "I01"]),
    (Where("I01", "Q", 30000.0), ["no approach 'Q'", "E, N, S, W"]),
    (Where("I01", "N", 600.0), ["at least an hour after the first"]),
    (Where("I01", "N", 10 * 86400.0), ["from t ="]),
    (Where("I01", "N", float("nan")), ["finite"]),
])
def test_a_bad_target_is_named_with_what_exists(con, where, words):
    with pytest.raises(AnalyticsError) as err:
        features.check_target(con, where, "small.duckdb")
    assert all(w in str(err.value) for w in words)
