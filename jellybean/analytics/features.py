"""The congestion query's features: aggregates over the last hour of one approach's observations.

At time T, for approach A of intersection X (observations with T - 3600 <= t < T):

| feature | what | approximate estimator |
| --- | --- | --- |
| `vehicles_1h` | vehicles in view, on average: observations / (3600 s × hz) | count (share of the sample in the window × table rows) |
| `speed_1h` | mean speed, m/s | mean |
| `stopped_1h` | share of observations stopped (speed < 1 m/s) | share (a count over the window's rows) |
| `vehicles_15m` | vehicles in view over the last 15 minutes | count |
| `speed_15m` | mean speed over the last 15 minutes | mean |
| `tod_sin`, `tod_cos` | the time of day on the unit circle | exact (no data) |

The exact features are one SQL aggregate (``exact``); the training grid computes the same sums per
minute and adds them up over windows (``grid``), so model and query see the same numbers. The label
is whether the next 5 minutes are congested: their mean speed below ``CONGESTED_SPEED``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from jellybean.analytics.errors import AnalyticsError
from jellybean.analytics.store import TABLE, hz_of

NAMES = ("vehicles_1h", "speed_1h", "stopped_1h", "vehicles_15m", "speed_15m", "tod_sin", "tod_cos")
WINDOW_S = 3600.0
RECENT_S = 900.0
HORIZON_S = 300.0
STOP_SPEED = 1.0
CONGESTED_SPEED = 4.0       # m/s (14 km/h): a mean below this over the next 5 minutes is congestion
MIN_ROWS = 2                # a window needs this many observations for a mean


@dataclass(frozen=True)
class Where:
    """One query's target: an approach of an intersection, at time ``t`` (seconds on the store's clock)."""

    intersection: str
    approach: str
    t: float

    @property
    def start(self) -> float:
        return self.t - WINDOW_S

    @property
    def recent(self) -> float:
        return self.t - RECENT_S


def time_of_day(t: float | np.ndarray) -> tuple:
    angle = 2 * np.pi * (np.asarray(t, dtype=float) % 86400.0) / 86400.0
    return np.sin(angle), np.cos(angle)


def check_target(con, where: Where, path: str = "the store") -> None:
    """The approach exists and has observations from an hour before ``where.t``; an AnalyticsError
    naming what exists otherwise. Reads the store's catalog, not the observations."""
    from jellybean.analytics.store import approaches

    if not math.isfinite(where.t):
        raise AnalyticsError(f"--at {where.t!r}: give a finite time in seconds on the store's clock")
    found = approaches(con)
    inters = sorted({a.intersection for a in found})
    if where.intersection not in inters:
        raise AnalyticsError(f"{path}: no intersection {where.intersection!r}; it has {', '.join(inters) or 'none'}")
    mine = {a.approach: a for a in found if a.intersection == where.intersection}
    if where.approach not in mine:
        raise AnalyticsError(f"{path}: intersection {where.intersection} has no approach {where.approach!r}; "
                             f"it has {', '.join(sorted(mine))}")
    span = mine[where.approach]
    if not (where.start >= span.t_min - 60 and where.t <= span.t_max + 60):
        raise AnalyticsError(f"--at {where.t:g}: {where.intersection}/{where.approach} has observations from "
                             f"t = {span.t_min:.0f} to {span.t_max:.0f} s; give a time at least an hour after the "
                             "first and at most a minute after the last")


def no_traffic(where: Where, rows: int) -> AnalyticsError:
    return AnalyticsError(f"{where.intersection}/{where.approach} at t = {where.t:g}: {rows} observation(s) in the "
                          f"last 15 minutes, too few for a mean speed; pick a time with traffic")


def exact(con, where: Where) -> np.ndarray:
    """The features at ``where``, computed exactly by one SQL aggregate over the whole table."""
    hz = hz_of(con)
    row = con.execute(
        f"""SELECT count(*), avg(speed), avg(CAST(speed < {STOP_SPEED} AS DOUBLE)),
                   count(*) FILTER (WHERE t >= $recent), avg(speed) FILTER (WHERE t >= $recent)
            FROM {TABLE}
            WHERE intersection = $i AND approach = $a AND t >= $start AND t < $t""",
        {"i": where.intersection, "a": where.approach, "start": where.start, "recent": where.recent,
         "t": where.t}).fetchall()[0]
    n_1h, speed_1h, stopped_1h, n_15m, speed_15m = row
    if n_15m < MIN_ROWS:
        raise no_traffic(where, n_15m)
    s, c = time_of_day(where.t)
    return np.array([n_1h / (WINDOW_S * hz), speed_1h, stopped_1h, n_15m / (RECENT_S * hz), speed_15m, s, c])


def grid(con, every_s: float = 300.0) -> dict[str, np.ndarray]:
    """Features and labels at every ``every_s`` seconds of every approach with a full hour before and
    5 minutes after: arrays ``intersection``, ``approach``, ``t``, ``features`` [n, 7], ``label``,
    ``next_speed``. Sums per minute, added up over windows in SQL (the training set's path)."""
    hz = hz_of(con)
    step = int(round(every_s / 60.0))
    if step < 1:
        raise AnalyticsError(f"grid: every_s {every_s!r}: give a multiple of 60 s")
    rows = con.execute(f"""
        WITH per_minute AS (
            SELECT intersection, approach, CAST(floor(t / 60) AS BIGINT) AS m, count(*) AS n, sum(speed) AS v,
                   sum(CAST(speed < {STOP_SPEED} AS BIGINT)) AS s
            FROM {TABLE} GROUP BY ALL),
        span AS (SELECT intersection, approach, min(m) AS m0, max(m) AS m1 FROM per_minute GROUP BY ALL),
        times AS (SELECT intersection, approach, unnest(range((m0 + 60 + {step - 1}) // {step} * {step}, m1 - 4, {step})) AS m FROM span)
        SELECT q.intersection, q.approach, q.m * 60.0 AS t,
               sum(p.n) FILTER (WHERE p.m < q.m) AS n1, sum(p.v) FILTER (WHERE p.m < q.m) AS v1,
               sum(p.s) FILTER (WHERE p.m < q.m) AS s1,
               sum(p.n) FILTER (WHERE p.m >= q.m - 15 AND p.m < q.m) AS n15,
               sum(p.v) FILTER (WHERE p.m >= q.m - 15 AND p.m < q.m) AS v15,
               sum(p.n) FILTER (WHERE p.m >= q.m) AS nn, sum(p.v) FILTER (WHERE p.m >= q.m) AS vn
        FROM times q JOIN per_minute p
          ON p.intersection = q.intersection AND p.approach = q.approach AND p.m >= q.m - 60 AND p.m < q.m + 5
        GROUP BY ALL
        HAVING n15 >= {MIN_ROWS} AND nn >= 1
        ORDER BY ALL""").fetchnumpy()
    t = rows["t"].astype(float)
    n1, n15 = rows["n1"].astype(float), rows["n15"].astype(float)
    s, c = time_of_day(t)
    features = np.column_stack([n1 / (WINDOW_S * hz), rows["v1"] / n1, rows["s1"] / n1, n15 / (RECENT_S * hz),
                                rows["v15"] / n15, s, c])
    next_speed = rows["vn"].astype(float) / rows["nn"].astype(float)
    return {"intersection": np.asarray(rows["intersection"]), "approach": np.asarray(rows["approach"]), "t": t,
            "features": features, "next_speed": next_speed, "label": (next_speed < CONGESTED_SPEED).astype(np.int64)}
