"""What to run for the demand now: the decisions the controller (`deploy --adapt`) and the simulator
both take, from the same code.

- ``static``: the plan made for the planned load, never changed (what runs without --adapt);
- ``hardware``: the plan's variants, on as many workers as the demand needs (hardware scaling
  alone, Loki's baseline); what does not fit is late or dropped;
- ``loki``: hardware scaling first (the cheapest allocation at the accuracy target, elastic workers
  included); when no allocation meets the target on the workers usable now, accuracy scaling:
  the most accurate mix of variants that serves the demand, never below the workflow's floor.

Elastic workers (the cloud tier) are billed while they run and usable only ``startup_s`` after
they are requested: a VM takes a minute or more to boot.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from jellybean.adapt.model import Allocation, RuntimeProblem, solve
from jellybean.errors import JellyBeanError

PolicyName = Literal["static", "hardware", "loki"]
POLICIES: tuple[str, ...] = ("static", "hardware", "loki")


@dataclass(frozen=True)
class Decision:
    policy: str
    phase: str  # static | hardware (target met) | accuracy (accuracy scaling) | overload (not all served)
    reason: str
    workers: dict[tuple[str, str, str], int]  # (pool, op, variant) -> workers
    loads: dict[tuple[str, str, str], float]  # (pool, op, variant) -> items/s routed there
    shares: dict[str, dict[str, float]]  # op -> variant -> share of its items
    accuracy: float  # predicted: each operator's items split by `shares`, independently
    served: float  # fraction of the demand the workers can take (the least over operators)
    cost: float  # $/h of the workers running, booting ones included
    booting: dict[str, int] = field(default_factory=dict)  # slot -> workers requested, not yet usable
    seconds: float = 0.0

    def variants(self) -> dict[str, str]:
        """Each operator's variant with the largest share."""
        return {op: max(s, key=lambda v: (s[v], v)) for op, s in self.shares.items() if s}

    def same_allocation(self, other: Decision | None) -> bool:
        return other is not None and other.workers == self.workers


class Fleet:
    """Workers per slot: owned ones always usable, elastic ones after they have booted."""

    def __init__(self, rp: RuntimeProblem, startup_s: float, running: Mapping[str, int] | None = None,
                 elastic: bool = True) -> None:
        if not (math.isfinite(startup_s) and startup_s >= 0):
            raise JellyBeanError(f"start-up delay {startup_s!r} s: give a number of seconds ≥ 0")
        self.rp, self.startup_s, self.elastic = rp, startup_s, elastic
        self.ready: dict[str, int] = {}
        self.booting: dict[str, list[float]] = defaultdict(list)  # slot -> times each worker is ready
        for slot in rp.slots:
            self.ready[slot.name] = slot.count if not slot.elastic else min(slot.count, (running or {}).get(slot.name, 0))

    def limit(self, slot: str) -> int:
        s = self.rp.slot(slot)
        return s.count if (self.elastic or not s.elastic) else self.ready[slot]

    def usable(self, now: float) -> dict[str, int]:
        for slot, times in self.booting.items():
            done = [t for t in times if t <= now]
            if done:
                self.ready[slot] += len(done)
                self.booting[slot] = [t for t in times if t > now]
        return dict(self.ready)

    def want(self, slot: str, workers: int, now: float) -> None:
        """Have ``workers`` of an elastic slot running or booting: boot more, or stop idle ones.
        On fixed hardware (``elastic`` off) the plan's workers are owned: they stay up, usable."""
        if not self.rp.slot(slot).elastic or not self.elastic:
            return
        have = self.ready[slot] + len(self.booting[slot])
        if workers > have:
            self.booting[slot].extend([now + self.startup_s] * (workers - have))
        elif workers < have:
            surplus = have - workers
            cancel = min(surplus, len(self.booting[slot]))  # the latest requests first
            self.booting[slot] = sorted(self.booting[slot])[: len(self.booting[slot]) - cancel]
            self.ready[slot] -= surplus - cancel

    def pending(self) -> dict[str, int]:
        return {slot: len(t) for slot, t in self.booting.items() if t}


class Policy:
    """Decides, at each period, what runs. Shared by the controller and the simulator."""

    def __init__(self, rp: RuntimeProblem, name: PolicyName = "loki", *, startup_s: float = 60.0,
                 elastic: bool = True, utilisation: float = 0.9, running: Mapping[str, int] | None = None,
                 time_limit: float = 2.0) -> None:
        if name not in POLICIES:
            raise JellyBeanError(f"policy '{name}' is not one of {', '.join(POLICIES)}")
        if not (0 < utilisation <= 1):
            raise JellyBeanError(f"utilisation {utilisation!r}: give a fraction in (0, 1]")
        self.rp, self.name, self.utilisation, self.time_limit = rp, name, utilisation, time_limit
        self.profiled = rp   # `derate` scales a copy of its capacities; the base plan keeps these
        self.fleet = Fleet(rp, startup_s, running, elastic)
        # The plan for the planned load: what `static` keeps and whose variants `hardware` keeps.
        limits = {s.name: self.fleet.limit(s.name) for s in rp.slots}
        base = solve(rp, rp.base_rate, "cost", limits, utilisation=utilisation, time_limit=time_limit)
        if base is None:
            # The planner may fill workers to their capacity; the headroom is for what comes after.
            base = solve(rp, rp.base_rate, "cost", limits, utilisation=1.0, time_limit=time_limit)
        if base is None:
            raise JellyBeanError("no allocation serves the planned load at the accuracy target on this hardware; "
                                 "plan with `jellybean plan` first to see why")
        self.base = base
        self.base_variants = _variants(rp, base)
        for slot in rp.slots:
            self.fleet.want(slot.name, sum(n for k, n in base.workers.items() if k[0] == slot.name), 0.0)
            if slot.elastic:  # the base plan's workers are up when the run starts
                self.fleet.ready[slot.name] += len(self.fleet.booting[slot.name])
                self.fleet.booting[slot.name] = []
        self.last: Decision | None = None

    def derate(self, factors: Mapping[tuple[str, str], float]) -> None:
        """Decide from now on with each (slot, operator)'s profiled capacities times its factor
        (what the workers deliver now: `jellybean.adapt.derate`); 1 where none is given."""
        capacity = {key: cap * factors.get(key[:2], 1.0) for key, cap in self.profiled.capacity.items()}
        self.rp = dataclasses.replace(self.profiled, capacity=capacity)

    def decide(self, demand: Mapping[str, float], now: float) -> Decision:
        """``demand``: items/s per operator, as measured (smoothed)."""
        started = time.perf_counter()
        bad = [op for op, r in demand.items() if not (math.isfinite(r) and r >= 0)]
        if bad:
            raise JellyBeanError(f"demand of {', '.join(bad)} is not a finite rate ≥ 0")
        if self.name == "static":
            decision = self._decision(self.base, demand, "static", "the plan for the planned load, never changed")
        else:
            decision = self._scale(demand, now)
        decision = _with_seconds(decision, time.perf_counter() - started)
        self.last = decision
        return decision

    # -- the two phases ------------------------------------------------------------------------
    def _scale(self, demand: Mapping[str, float], now: float) -> Decision:
        rp, fixed = self.rp, (self.base_variants if self.name == "hardware" else None)
        limits = {s.name: self.fleet.limit(s.name) for s in rp.slots}
        usable = self.fleet.usable(now)
        target = solve(rp, demand, "cost", limits, variants=fixed, utilisation=self.utilisation,
                       time_limit=self.time_limit)
        if target is not None:
            self._want(target, now)
            usable = self.fleet.usable(now)
            if all(n <= usable.get(slot, 0) for slot, n in _per_slot(target).items()):
                return self._decision(target, demand, "hardware", _target_reason(rp, target))
            why = "waiting for " + ", ".join(f"{n} {slot} worker(s)" for slot, n in self.fleet.pending().items()) + \
                  f" to boot ({self.fleet.startup_s:.0f} s)"
        else:
            # Nothing meets the target even with every elastic worker: scale accuracy. Elastic
            # workers are bought to serve the items (as many as the cheapest way to serve them
            # needs; they boot meanwhile), not to raise accuracy beyond what that hardware gives.
            lean = solve(rp, demand, "lean", limits, variants=fixed, utilisation=self.utilisation,
                         time_limit=self.time_limit)
            if lean is not None:
                need = _per_slot(lean)
                limits = {slot: (min(n, need.get(slot, 0)) if rp.slot(slot).elastic else n)
                          for slot, n in limits.items()}
            most = solve(rp, demand, "accuracy", limits, variants=fixed, utilisation=self.utilisation,
                         time_limit=self.time_limit)
            if most is not None:
                self._want(most, now)
            usable = self.fleet.usable(now)
            why = ("no allocation meets the accuracy target at this demand"
                   if fixed is None else "the plan's variants cannot serve this demand on the hardware")
        interim = solve(rp, demand, "accuracy", usable, variants=fixed, utilisation=self.utilisation,
                        time_limit=self.time_limit)
        if interim is None:  # even the floor cannot be kept: keep the last decision's workers
            fallback = self.last if self.last is not None else self._decision(self.base, demand, "static", "")
            return Decision(**{**fallback.__dict__, "phase": "overload",
                               "reason": why + "; no mix keeps the accuracy floor, so the last allocation stays"})
        phase = "overload" if interim.served < 1 - 1e-6 else ("accuracy" if fixed is None else "hardware")
        if phase == "overload":
            why += f"; the workers usable now serve {interim.served:.1%} of it"
        return self._decision(interim, demand, phase, why)

    def _want(self, allocation: Allocation, now: float) -> None:
        per_slot = _per_slot(allocation)
        for slot in self.rp.slots:
            if slot.elastic:
                self.fleet.want(slot.name, per_slot.get(slot.name, 0), now)

    # -- from an allocation to what runs where ------------------------------------------------
    def _decision(self, allocation: Allocation, demand: Mapping[str, float], phase: str, reason: str) -> Decision:
        rp = self.rp
        loads, shares, served = most_accurate_first(rp, allocation.workers, demand, self.utilisation)
        workers, pool_loads = _split(rp, allocation.workers, loads)
        booting = self.fleet.pending()
        cost = sum(rp.slot(k[0]).price * n for k, n in allocation.workers.items())
        cost += sum(rp.slot(slot).price * n for slot, n in booting.items())
        return Decision(self.name, phase, reason, workers, pool_loads, shares, routed_accuracy(rp, shares),
                        served, cost, booting)


def most_accurate_first(rp: RuntimeProblem, workers: Mapping[tuple[str, str, str], int],
                        demand: Mapping[str, float], utilisation: float
                        ) -> tuple[dict[tuple[str, str, str], float], dict[str, dict[str, float]], float]:
    """Loki's routing: each operator's items fill its most accurate variant's workers to capacity,
    then spill to the next. Returns loads per (slot, op, variant), shares, and the served fraction.
    An operator's items are its demand scaled by the variants upstream as they split theirs (a
    strided detector passes on half the crops)."""
    loads: dict[tuple[str, str, str], float] = {}
    shares: dict[str, dict[str, float]] = {}
    served = 1.0
    for op in rp.operators:
        need = demand.get(op, 0.0) * rp.reach_of_shares(op, shares)
        left = need
        by_variant: dict[str, list[tuple[tuple[str, str, str], float]]] = defaultdict(list)
        for key, n in workers.items():
            if key[1] == op:
                by_variant[key[2]].append((key, utilisation * rp.capacity[key] * n))
        taken: dict[str, float] = {}
        for var in sorted(by_variant, key=lambda v: (-rp.rank[op, v], v)):
            supply = sum(c for _, c in by_variant[var])
            take = min(left, supply)
            for key, c in by_variant[var]:
                loads[key] = take * c / supply if supply > 0 else 0.0
            taken[var] = take
            left -= take
        total = sum(taken.values())
        if total > 0:
            shares[op] = {v: t / total for v, t in taken.items() if t > 0}
        elif by_variant:
            best = max(by_variant, key=lambda v: (rp.rank[op, v], v))
            shares[op] = {best: 1.0}
        if need > 0:
            served = min(served, total / need)
    return loads, shares, served


def routed_accuracy(rp: RuntimeProblem, shares: Mapping[str, Mapping[str, float]]) -> float:
    """Σ_p acc[p]·Π_op share[op][p_op]: each operator splits its items on its own, as agents do."""
    value = 0.0
    for p, acc in rp.accuracy.items():
        weight = 1.0
        for op, var in zip(rp.operators, p):
            weight *= shares.get(op, {}).get(var, 0.0)
            if weight == 0.0:
                break
        value += weight * acc
    return value


def _variants(rp: RuntimeProblem, allocation: Allocation) -> dict[str, str]:
    share: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for p, q in allocation.paths.items():
        for op, var in zip(rp.operators, p):
            share[op][var] += q
    return {op: max(s, key=lambda v: (s[v], v)) for op, s in share.items()}


def _per_slot(allocation: Allocation) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for (slot, _, _), n in allocation.workers.items():
        out[slot] += n
    return dict(out)


def _split(rp: RuntimeProblem, workers: Mapping[tuple[str, str, str], int],
           loads: Mapping[tuple[str, str, str], float]
           ) -> tuple[dict[tuple[str, str, str], int], dict[tuple[str, str, str], float]]:
    """A slot's workers and load back over its pools: fill each pool's workers in turn."""
    out_w: dict[tuple[str, str, str], int] = {}
    out_l: dict[tuple[str, str, str], float] = {}
    for slot in rp.slots:
        free = [[pool, n] for pool, n in slot.members]
        for key in sorted(k for k in workers if k[0] == slot.name):
            n, load = workers[key], loads.get(key, 0.0)
            for entry in free:
                if n == 0:
                    break
                take = min(n, entry[1])
                if take > 0:
                    out_w[entry[0], key[1], key[2]] = take
                    out_l[entry[0], key[1], key[2]] = load * take / workers[key]
                    entry[1] -= take
                    n -= take
    return out_w, out_l


def _target_reason(rp: RuntimeProblem, allocation: Allocation) -> str:
    if rp.target is None:
        return "the least $/h that serves the demand"
    return f"the least $/h that serves the demand at accuracy ≥ {rp.target:g}"


def _with_seconds(decision: Decision, seconds: float) -> Decision:
    return Decision(**{**decision.__dict__, "seconds": seconds})
