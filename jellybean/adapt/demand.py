"""Demand as the controller sees it: an exponentially weighted moving average of measured rates.

Time-based, not per-sample: the weight of a sample grows with the time it covers, so estimates do
not depend on how often agents report (Loki smooths demand the same way before each decision).
"""

from __future__ import annotations

import math

from jellybean.errors import JellyBeanError


class Ewma:
    """Items/s per key, smoothed with time constant ``tau_s``."""

    def __init__(self, tau_s: float = 5.0) -> None:
        if not (math.isfinite(tau_s) and tau_s > 0):
            raise JellyBeanError(f"demand smoothing time constant {tau_s!r} s: give a positive number of seconds")
        self.tau_s = tau_s
        self.values: dict[str, float] = {}
        self._at: dict[str, float] = {}

    def observe(self, key: str, rate: float, now: float) -> float:
        """Fold in the rate measured over the interval ending at ``now``; returns the estimate."""
        if not math.isfinite(rate) or rate < 0:
            return self.values.get(key, 0.0)  # a bad figure is not demand
        last = self._at.get(key)
        if last is None:
            self.values[key] = rate
        else:
            weight = 1.0 - math.exp(-max(0.0, now - last) / self.tau_s)
            self.values[key] += weight * (rate - self.values[key])
        self._at[key] = now
        return self.values[key]

    def get(self, key: str, default: float = 0.0) -> float:
        return self.values.get(key, default)
