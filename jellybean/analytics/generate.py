"""Large synthetic histories of vehicle observations, vectorised in numpy, for training and benchmarks.

The city: ``intersections`` intersections (I01, I02, ...), four approaches each (N, E, S, W). Per
approach and minute a latent traffic state drives what the cameras see:

- demand (vehicles arriving per minute): a diurnal profile (quiet nights, a day plateau, a morning
  rush around 08:00 and a longer evening rush around 17:30; weekends a third of the rush), times
  the approach's own size, times a per-day rush multiplier (log-normal: some days are worse), times
  slow noise (an AR(1) on the log, minute to minute);
- a queue that grows by demand − capacity every minute and drains when demand falls below it
  (a point queue: congestion persists for a while after the rush that caused it);
- from those, the minute's free-flow share, mean moving speed and vehicles in view (moving ones
  cross the ~45 m view, queued ones stay in it).

Each vehicle in view is observed ``hz`` times a second: an observation is stopped (speed < 1 m/s,
with the time it has waited so far as dwell) with the minute's queued share, else moving at the
minute's speed with per-vehicle noise. So the next minutes' congestion follows from the last hour's
counts, speeds and stopped shares, and the time of day; that is what the congestion model learns.

``rows`` instead of ``hz``: the rate that gives that many rows in expectation. The rows come out in
random order (see jellybean.analytics.store).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from jellybean.analytics.errors import AnalyticsError

APPROACHES = ("N", "E", "S", "W")
VIEW_M = 45.0               # metres of approach a camera sees
STOP_SPEED = 1.0            # m/s: slower is stopped
DAY_S = 86400.0


class HistoryConfig(BaseModel):
    """What to generate; ``hz`` xor ``rows`` (the rate that gives that many rows)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    intersections: int = Field(2, ge=1, le=999)
    days: float = Field(1.0, gt=0, le=366)
    hz: float | None = Field(None, gt=0, le=30, allow_inf_nan=False)
    rows: int | None = Field(None, ge=1000, le=2_000_000_000)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_rate(self):
        if (self.hz is None) == (self.rows is None):
            raise ValueError("give exactly one of hz (observations per vehicle per second) or rows (a target size)")
        return self


def config(**values) -> HistoryConfig:
    """A HistoryConfig, with pydantic's complaints turned into one AnalyticsError naming each field."""
    from pydantic import ValidationError

    try:
        return HistoryConfig(**values)
    except ValidationError as exc:
        problems = [f"--{'.'.join(map(str, e['loc'])).replace('_', '-') or 'options'}: {e['msg']}"
                    for e in exc.errors()]
        raise AnalyticsError("\n".join(problems)) from None


@dataclass(frozen=True)
class Latent:
    """Per approach (rows of the arrays, intersection-major) and minute (columns)."""

    names: tuple[tuple[str, str], ...]     # (intersection, approach) per row
    in_view: np.ndarray                    # mean vehicles in view
    stopped: np.ndarray                    # share of them stopped
    speed: np.ndarray                      # mean speed of the moving ones, m/s
    queue: np.ndarray                      # queued vehicles


def _profile(hours: np.ndarray, weekday: np.ndarray) -> np.ndarray:
    """Arrivals per minute of an average approach at these hours of the day."""
    rush = 1.0 * np.exp(-0.5 * ((hours - 8.0) / 0.8) ** 2) + 0.9 * np.exp(-0.5 * ((hours - 17.5) / 1.2) ** 2)
    day = 1.0 / (1.0 + np.exp(-(hours - 6.0) * 1.5)) * (1.0 - 1.0 / (1.0 + np.exp(-(hours - 21.5) * 1.2)))
    return 1.5 + 9.0 * day + 13.0 * rush * np.where(weekday, 1.0, 0.33)


def latent(cfg: HistoryConfig) -> Latent:
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1]))
    names = tuple((f"I{i + 1:02d}", a) for i in range(cfg.intersections) for a in APPROACHES)
    lanes = len(names)
    minutes = max(60, int(round(cfg.days * 1440)))
    m = np.arange(minutes)
    hours = (m % 1440) / 60.0
    weekday = (m // 1440) % 7 < 5
    size = rng.uniform(0.6, 1.3, (lanes, 1))
    capacity = rng.uniform(17.0, 24.0, (lanes, 1))         # vehicles per minute through the stop line
    free = rng.uniform(11.0, 15.0, (lanes, 1))             # m/s
    days = m // 1440
    per_day = np.exp(rng.normal(0.0, 0.22, (lanes, days.max() + 1)))[:, days]
    shocks = rng.normal(0.0, 0.035, (lanes, minutes))
    from scipy.signal import lfilter

    slow = lfilter([1.0], [1.0, -0.97], shocks, axis=1)    # AR(1): slow, persistent fluctuation
    demand = size * _profile(hours, weekday)[None, :] * per_day * np.exp(slow)
    # the point queue, minute by minute (a loop over minutes, vectorised over approaches)
    queue = np.empty_like(demand)
    q = np.zeros(lanes)
    for k in range(minutes):
        q = np.maximum(0.0, q + demand[:, k] - capacity[:, 0])
        queue[:, k] = q
    load = demand / capacity
    speed = free / (1.0 + 0.8 * load ** 4)                 # BPR-like: slower as the approach fills
    moving = demand / 60.0 * VIEW_M / speed                # arrivals/s × seconds to cross the view
    queued = np.minimum(queue, 2 * VIEW_M / 6.5)           # two lanes of 6.5 m per queued vehicle
    in_view = moving + queued + 0.05
    return Latent(names, in_view, queued / in_view, speed, queue)


def rate_for(cfg: HistoryConfig, lat: Latent | None = None) -> float:
    """The observation rate: ``cfg.hz``, or the one whose expected row count is ``cfg.rows``."""
    if cfg.hz is not None:
        return float(cfg.hz)
    lat = lat or latent(cfg)
    return float(cfg.rows / (lat.in_view.sum() * 60.0))


def generate(cfg: HistoryConfig, on_chunk: Callable[[int, int], None] | None = None
             ) -> tuple[dict[str, np.ndarray], float]:
    """(the observation columns in random order, the rate hz); ``on_chunk(done, total)`` after each
    approach is drawn."""
    lat = latent(cfg)
    hz = rate_for(cfg, lat)
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 2]))
    lanes, minutes = lat.in_view.shape
    parts: list[dict[str, np.ndarray]] = []
    next_id = 0
    for lane in range(lanes):
        count = rng.poisson(lat.in_view[lane] * 60.0 * hz)
        n = int(count.sum())
        minute = np.repeat(np.arange(minutes), count)
        t = (minute + rng.random(n)) * 60.0
        stopped = rng.random(n) < lat.stopped[lane, minute]
        moving_speed = lat.speed[lane, minute] * np.exp(rng.normal(0.0, 0.18, n))
        speed = np.where(stopped, rng.uniform(0.0, 0.8, n), np.maximum(moving_speed, STOP_SPEED))
        wait = 15.0 + 2.5 * lat.queue[lane, minute]        # a longer queue, a longer wait so far
        dwell = np.where(stopped, rng.exponential(1.0, n) * wait, 0.0)
        # vehicles: about in_view of them per minute, each seen hz times a second
        vehicles = np.maximum(1, np.ceil(lat.in_view[lane, minute])).astype(np.int64)
        track = next_id + minute.astype(np.int64) * 64 + (rng.random(n) * vehicles).astype(np.int64)
        next_id += minutes * 64
        parts.append({"lane": np.full(n, lane, np.int16), "track_id": track, "t": t,
                      "speed": speed.astype(np.float32), "dwell": dwell.astype(np.float32)})
        if on_chunk is not None:
            on_chunk(lane + 1, lanes)
    joined = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = rng.permutation(joined["t"].size)
    lane = joined.pop("lane")[order]
    import pandas as pd

    # names as categoricals (codes into the lanes' names): no Python string per row
    inters = sorted({i for i, _ in lat.names})
    columns = {"intersection": pd.Categorical.from_codes(lane // len(APPROACHES), inters),
               "approach": pd.Categorical.from_codes(lane % len(APPROACHES), list(APPROACHES))}
    columns.update({k: v[order] for k, v in joined.items()})
    return columns, hz


def expected_rows(cfg: HistoryConfig) -> int:
    lat = latent(cfg)
    return int(round(lat.in_view.sum() * 60.0 * rate_for(cfg, lat)))
