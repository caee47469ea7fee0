"""Demand as the controller sees it: an exponentially weighted moving average of measured rates.

Time-based, not per-sample: the weight of a sample grows with the time it covers, so estimates do
not depend on how often agents report (Loki smooths demand the same way before each decision).
Asymmetric, as autoscalers are: a rise is followed within ``rise_tau_s`` (a burst that waits for a
slow average is a queue that overflows), a fall only over ``tau_s`` (so a lull of a few seconds
does not give away capacity the next second needs).
"""

from __future__ import annotations

import math

from jellybean.errors import JellyBeanError


class Ewma:
    """Items/s per key, smoothed with time constant ``tau_s``."""

    def __init__(self, tau_s: float = 5.0, rise_tau_s: float | None = None) -> None:
        rise_tau_s = tau_s if rise_tau_s is None else rise_tau_s
        for name, value in (("", tau_s), ("rise ", rise_tau_s)):
            if not (math.isfinite(value) and value > 0):
                raise JellyBeanError(f"demand smoothing {name}time constant {value!r} s: give a positive number of seconds")
        self.tau_s, self.rise_tau_s = tau_s, rise_tau_s
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
            tau = self.rise_tau_s if rate > self.values[key] else self.tau_s
            weight = 1.0 - math.exp(-max(0.0, now - last) / tau)
            self.values[key] += weight * (rate - self.values[key])
        self._at[key] = now
        return self.values[key]

    def get(self, key: str, default: float = 0.0) -> float:
        return self.values.get(key, default)
