"""What a site's workers deliver now, against their profile: the adapter's capacity correction.

`zoo profile` times each variant with the machine to itself. A deployed box shares its cores
(the broker, the site's other agents, whatever else runs there) and then serves less; a policy
that trusts the profile picks a variant that "keeps up" while its queue grows. So the adapter
watches each (site, operator) of the running plan:

- **saturated**: a backlog of more than ``SATURATED_S`` of its own service that is not shrinking
  (as much arrived as it served), or of more than ``BACKLOG_S``. Under deadlines the queue of an
  overloaded operator rides its deadline, so drops come with a backlog. What it served is then
  what it can serve now, and the factor becomes served / planned capacity at once. A short queue
  that it served down within the interval is a hiccup (a collection, a busy neighbour), not a
  capacity;
- **keeping up**: the factor relaxes back towards the profile (1) with time constant ``relax_s``,
  because contention passes and a box that keeps up cannot show how much faster it has become;
  what it served is a lower bound all the same.

The factor scales every variant of that operator at that site (the contention slows the box, not
one model). Factors are clamped to [``FLOOR``, ``CEILING``]: a stalled report is not a box that
serves nothing. The simulator has no contention to correct, so it plans on the profile alone.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from jellybean.agents.messages import OperatorMetrics
from jellybean.errors import JellyBeanError
from jellybean.spec.plan import Plan

SATURATED_S = 0.2   # a queue holding more than this much of the worker's service, not shrinking, ...
BACKLOG_S = 1.0     # ... or more than this much, shrinking or not, is a backlog
FLOOR, CEILING = 0.2, 1.5


@dataclass(frozen=True)
class Service:
    """One report's figures for the workers of one operator at one site."""

    location: str
    operator: str
    served_per_s: float   # the plan's items (frames, crops) served per second
    planned: float        # the running plan's capacity for them, items/s (profiled)
    queue: float          # items waiting now, in the same units as served
    arrived_per_s: float  # items that arrived per second over the same interval

    @property
    def saturated(self) -> bool:
        backlog = self.queue > max(1.0, SATURATED_S * self.served_per_s)
        return backlog and (self.arrived_per_s >= self.served_per_s or self.queue > BACKLOG_S * self.served_per_s)


class Derating:
    """Per (site, operator): how much of its profiled capacity it delivers now."""

    def __init__(self, relax_s: float = 60.0) -> None:
        if not (math.isfinite(relax_s) and relax_s > 0):
            raise JellyBeanError(f"capacity relaxation time {relax_s!r} s: give a positive number of seconds")
        self.relax_s = relax_s
        self.factors: dict[tuple[str, str], float] = {}
        self.evidence: dict[tuple[str, str], str] = {}   # why the factor is what it is, for the log
        self._at: dict[tuple[str, str], float] = {}

    def observe(self, reports: Iterable[Service], now: float) -> None:
        for s in reports:
            if not (s.planned > 0 and math.isfinite(s.served_per_s) and s.served_per_s >= 0):
                continue
            key = (s.location, s.operator)
            ratio = min(CEILING, max(FLOOR, s.served_per_s / s.planned))
            old = self.factors.get(key, 1.0)
            if s.saturated:
                new = ratio
                self.evidence[key] = (f"served {s.served_per_s:.1f} of {s.planned:.1f} items/s with "
                                      f"{s.queue:.0f} waiting")
            else:
                # Relax towards the profile, but never below what it just served.
                dt = max(0.0, now - self._at.get(key, now))
                new = max(1.0 + (old - 1.0) * math.exp(-dt / self.relax_s), ratio)
            self.factors[key] = new
            self._at[key] = now

    def factor(self, location: str, operator: str) -> float:
        return self.factors.get((location, operator), 1.0)

    def describe(self) -> str:
        """The factors that differ from the profile, for the decision's log line."""
        parts = [f"{op} at {loc} x{f:.2f} ({self.evidence.get((loc, op), 'relaxing')})"
                 for (loc, op), f in sorted(self.factors.items()) if abs(f - 1.0) >= 0.01]
        return "; ".join(parts)


def services(plan: Plan, per_site: Mapping[str, Iterable[OperatorMetrics]]) -> list[Service]:
    """The reports of each site's agents for one interval, summed per operator, beside the running
    plan's capacity there. Queues count messages; they are turned into the plan's items at the
    interval's items per message (a detections message carries several crops)."""
    planned: dict[tuple[str, str], float] = defaultdict(float)
    for w in plan.workers:
        if w.count > 0:
            planned[w.location, w.operator] += w.capacity
    out = []
    for site, reports in per_site.items():
        served: dict[str, float] = defaultdict(float)
        messages: dict[str, float] = defaultdict(float)
        queue: dict[str, float] = defaultdict(float)
        arrived: dict[str, float] = defaultdict(float)
        for o in reports:
            served[o.operator] += o.served_per_s
            messages[o.operator] += o.items_per_s
            queue[o.operator] += o.queue_depth
            arrived[o.operator] += o.arrivals_per_s
        for op, s in served.items():
            if (site, op) in planned:
                per_message = s / messages[op] if messages[op] > 0 else 1.0
                out.append(Service(site, op, s, planned[site, op], queue[op] * per_message, arrived[op]))
    return out
