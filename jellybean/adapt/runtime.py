"""`deploy --adapt`: the policy run against the demand the agents measure, its decisions turned
into plans the controller deploys.

The placement stays the plan's (an operator runs only at the sites the plan gave it), so a
decision changes variants, their shares and worker counts, and the routes keep their shape: each
route of an edge is scaled by how much its consumer's load changed.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from jellybean.adapt.demand import Ewma
from jellybean.adapt.derate import Derating, services
from jellybean.adapt.model import RuntimeProblem
from jellybean.adapt.policy import Decision, Policy, PolicyName
from jellybean.agents.deployment import Deployment, source_fed
from jellybean.agents.messages import OperatorMetrics
from jellybean.errors import JellyBeanError
from jellybean.planner.build import build_problem
from jellybean.planner.problem import Problem
from jellybean.spec.plan import Costs, Plan, Prediction, Route, SolverInfo, WorkerGroup

# Below this share of the planned rate at the operators the sources feed, the deployment is idle
# (the replay has not started or has ended): nothing to decide on.
IDLE_FRACTION = 0.05
SHARE_TOLERANCE = 0.02  # weights that moved less than this are not worth a new assignment


@dataclass(frozen=True)
class AdaptOptions:
    policy: PolicyName = "loki"
    period_s: float = 5.0
    startup_s: float = 60.0
    elastic: bool = True
    utilisation: float = 0.9
    tau_s: float = 5.0        # demand falls are followed over this
    rise_tau_s: float = 1.0   # rises over this (jellybean.adapt.demand)

    def __post_init__(self) -> None:
        for name in ("period_s", "tau_s", "rise_tau_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise JellyBeanError(f"--adapt {name.replace('_s', '')}: {value!r} s; give a positive number of seconds")

    def ewma(self) -> Ewma:
        return Ewma(self.tau_s, self.rise_tau_s)


class Cadence:
    """When the controller decides, shared with the simulator: on a fresh report once half a period
    has passed since the last decision (a burst is met a period earlier than on a fixed beat), and
    once a period on the estimate when no report comes."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._next = 0.0

    def due(self, now: float, fresh: bool) -> bool:
        if now < self._next - (self.period_s / 2 if fresh else 0.0):
            return False
        self._next = now + self.period_s
        return True


class Adapter:
    """Decides on the measured demand as `Cadence` says; hands back a deployment when it changes."""

    def __init__(self, deployment: Deployment, options: AdaptOptions = AdaptOptions()) -> None:
        self.options = options
        self.demand = options.ewma()
        self.decisions: list[tuple[float, Decision]] = []
        self.cadence = Cadence(options.period_s)
        self._seen: float | None = None  # the newest measurement folded into the demand
        self.history: list[tuple[float, float, float]] = []  # (when, measured multiplier, smoothed)
        self.derating = Derating()
        self.rebase(deployment)

    def rebase(self, deployment: Deployment) -> None:
        """Adapt around another plan (the controller re-planned without a lost site)."""
        self.base = deployment
        options = self.options
        self.problem = build_problem(deployment.inputs)
        plan = deployment.plan
        placement: dict[str, set[str]] = defaultdict(set)
        for w in plan.workers:
            if w.count > 0:
                placement[w.operator].add(w.location)
        self.rp = RuntimeProblem.from_problem(self.problem, placement,
                                              floor=deployment.inputs.workflow.slo.min_accuracy)
        running = defaultdict(int)
        for w in plan.workers:
            running[w.pool] += w.count
        self.policy = Policy(self.rp, options.policy, startup_s=options.startup_s, elastic=options.elastic,
                             utilisation=options.utilisation, running=self._slots(running))
        self.fed = source_fed(deployment.inputs) & set(self.rp.base_rate)
        self.deployed: Decision | None = None
        self._derate()

    def observe(self, plan: Plan, per_site: Mapping[str, list[OperatorMetrics]], now: float) -> None:
        """What each site's agents served while running ``plan`` (one report interval, all of it
        under ``plan``): decisions from now on use the capacities they deliver
        (`jellybean.adapt.derate`)."""
        self.derating.observe(services(plan, per_site), now)
        self._derate()

    def _derate(self) -> None:
        factors: dict[tuple[str, str], float] = {}
        for slot in self.rp.slots:
            weights = [(n, self.problem.pool(pool).location) for pool, n in slot.members]
            total = sum(n for n, _ in weights)
            if total <= 0:
                continue
            for op in self.rp.operators:
                factors[slot.name, op] = sum(n * self.derating.factor(loc, op) for n, loc in weights) / total
        self.policy.derate(factors)

    def _slots(self, per_pool: Mapping[str, int]) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for slot in self.rp.slots:
            for pool, _ in slot.members:
                out[slot.name] += per_pool.get(pool, 0)
        return dict(out)

    def multiplier(self, measured: Mapping[str, float], now: float) -> float | None:
        """Smoothed demand over the planned load, from what arrives at the operators the sources
        feed (every frame arrives there, served or not); None while the deployment is idle."""
        ratios = [measured.get(op, 0.0) / self.rp.base_rate[op] for op in self.fed if self.rp.base_rate[op] > 0]
        if not ratios:
            return None
        ratio = sum(ratios) / len(ratios)
        if ratio < IDLE_FRACTION:
            return None
        estimate = self.demand.observe("load", ratio, now)
        self.history.append((now, ratio, estimate))
        return estimate

    def step(self, measured: Mapping[str, float], now: float | None = None,
             measured_at: float | None = None) -> Deployment | None:
        """A decision when one is due; the deployment to publish when it differs from what runs.

        ``measured_at``: when the newest of the measurements was taken; a measurement already
        folded into the demand is not folded in again (agents report every second or two, the
        controller may decide more often)."""
        now = time.monotonic() if now is None else now
        fresh = measured_at is None or measured_at != self._seen
        if not self.cadence.due(now, fresh):
            return None
        if not fresh:
            m = self.demand.values.get("load")
        else:
            self._seen = measured_at
            m = self.multiplier(measured, now)
        if m is None:
            return None
        decision = self.policy.decide({op: r * m for op, r in self.rp.base_rate.items()}, now)
        self.decisions.append((now, decision))
        if _same(decision, self.deployed):
            return None
        self.deployed = decision
        return dataclasses.replace(self.base, plan=plan_for(self.base.plan, self.problem, decision, m))


def _same(a: Decision, b: Decision | None) -> bool:
    if b is None or a.workers != b.workers:
        return False
    for op, shares in a.shares.items():
        other = b.shares.get(op, {})
        if any(abs(s - other.get(v, 0.0)) > SHARE_TOLERANCE for v, s in shares.items()):
            return False
    return True


def plan_for(base: Plan, problem: Problem, decision: Decision, multiplier: float) -> Plan:
    """The plan a decision stands for, in the plan file's layout."""
    workers = []
    for (pool_name, op, var), count in sorted(decision.workers.items()):
        pool = problem.pool(pool_name)
        cap = problem.capability(op, var, pool.hardware)
        assert cap is not None  # the runtime model offers only what the zoo profiles
        workers.append(WorkerGroup(
            location=pool.location, tier=problem.location(pool.location).tier_name, pool=pool.name,
            hardware=pool.hardware, operator=op, variant=var, count=count,
            load=decision.loads.get((pool_name, op, var), 0.0), capacity=count * cap.capacity, batch=cap.batch,
            latency_ms=cap.latency_ms, threads=cap.threads, price_per_hour=pool.price, members=pool.members))
    old_load: dict[str, float] = defaultdict(float)
    for w in base.workers:
        old_load[w.operator] += w.load
    new_load: dict[str, float] = defaultdict(float)
    for w in workers:
        new_load[w.operator] += w.load
    routes = []
    for r in base.routes:
        consumer = r.edge.split("->", 1)[-1]
        scale = new_load[consumer] / old_load[consumer] if old_load[consumer] > 0 else 0.0
        routes.append(r.model_copy(update={"items_per_s": r.items_per_s * scale, "kb_per_s": r.kb_per_s * scale}))
    compute = sum(w.cost_per_hour for w in workers)
    network = base.cost.network * multiplier
    accuracy = decision.accuracy if base.predicted.accuracy is not None else None
    throughput = {op: load for op, load in new_load.items()}
    return base.model_copy(update=dict(
        name=f"{base.name}-adapt",
        strategy=f"adapt:{decision.policy}",
        solver=SolverInfo(status="FEASIBLE", seconds=decision.seconds, backend="HIGHS"),
        variants={**base.variants, **decision.variants()},
        workers=tuple(workers),
        routes=tuple(Route.model_validate(r.model_dump(by_alias=True)) for r in routes),
        cost=Costs(compute=compute, network=network, total=compute + network),
        predicted=Prediction(**{**base.predicted.model_dump(), "accuracy": accuracy, "throughput": throughput}),
    ))
