"""`jellybean simulate`: the adapt policies against a load trace, at any scale, without agents.

A fluid, fixed-step model of what the agents do with the plan's hardware:

- **Items** are fractions of frames: an operator's queue holds *cohorts*, each ``n`` frames' worth
  of items that arrive at it spread evenly over ``[a0, a1]`` and were captured over ``[c0, c1]``
  (in the same order). An operator's items per frame are its planned rate over its source's
  (edge ratios, e.g. 5.9 crops per frame), so queues count frames and fan-out is implicit. After
  a strided variant (output scale 1/stride) only that share of its frames carry items on; the
  others are done when it passes them on.
- **Queues** are kept per (slot, operator, variant): the policy splits a slot's workers and load
  over its pools in proportion (`policy._split`), so each pool's queue is the same as the slot's,
  scaled; one queue per slot is exact in a fluid model and keeps a 250-site city fast.
- **Service:** FIFO at workers × capacity (the profile's items/s) per queue; an item takes the
  profile's (batch) latency once it reaches the head. With deadlines (the default, as
  `deploy --deadlines`), an item whose operator would finish it after capture + ``slo.latency_ms``
  is dropped at the head without using the worker (reason ``deadline``); under overload the queue
  "rides" the deadline: it serves at full rate and drops the rest. Without deadlines the agents'
  ``drop_after_ms`` (5 s since capture, reason ``late``) applies and items may finish late.
- **Routing:** a producer's output goes to its consumers' queues by the decision's loads (most
  accurate variant first, `policy.most_accurate_first`); when a decision takes a queue's workers
  away, its items move to the operator's other queues (the broker redelivers them).
- **Demand** is measured as the runtime does (`runtime.Adapter.multiplier`): the items arriving
  at the operators the sources feed, over the planned rate, smoothed by the same `Ewma`, so the
  policy decides on lagging figures; the agents report every REPORT_S and the controller's
  `runtime.Cadence` says when a report is decided on, with the
  very `Policy` the controller runs (elastic start-up delay in its `Fleet`, on simulated time).

Every frame offered ends once: served on time, late, or dropped (checked at the end of each run:
offered = on time + late + dropped, after the queues drain). Not modelled: link latency and
bandwidth between sites, batching windows beyond the profile's batch latency, the time agents
take to apply an assignment, and randomness (the model is deterministic: one run is the answer).
"""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from jellybean.adapt.model import RuntimeProblem
from jellybean.adapt.policy import Decision, Policy, most_accurate_first, routed_accuracy
from jellybean.adapt.runtime import IDLE_FRACTION, AdaptOptions, Cadence
from jellybean.agents.deployment import HOP_MS
from jellybean.errors import JellyBeanError
from jellybean.planner import parity
from jellybean.planner.build import Inputs, build_problem
from jellybean.planner.problem import Problem
from jellybean.replay.trace import LoadTrace

# Without --deadlines an agent tombstones items older than this since capture (reason `late`):
# the default `drop_after_ms` of jellybean.agents.tasks.
DROP_AFTER_S = 5.0
# How often agents report what arrived (jellybean.agents.agent.AgentOptions.metrics_s): the
# controller folds the newest report into the demand when it decides.
REPORT_S = 1.0
# After the trace ends no frames are offered; the queues drain for at most this long (with
# deadlines they are empty within slo.latency_ms); what is left then is dropped as `unfinished`.
DRAIN_LIMIT_S = 600.0
EPS = 1e-12
PHASES = ("plan", "static", "hardware", "accuracy", "overload")  # "plan": before the first decision


@dataclass(frozen=True)
class SimSettings:
    step_s: float = 1.0  # simulated seconds per step
    stretch: float = 1.0  # simulated seconds per second of the trace
    duration_s: float | None = None  # None: the trace's length (its last row held as long as the one before)
    relative_cameras: bool = False  # a `cameras` trace as a share of its largest value, not a count
    quantum: float = 0.01  # demand multipliers rounded to this before a decision (see `_Run.report`)
    deadlines: bool = True
    # The agents keep, of an item's deadline, the time the operators after its operator need
    # (their service time and a hop each: jellybean.agents.deployment.reserves), so what an early
    # operator serves in time is not dropped downstream. Off: only the operator's own finish
    # counts, and under sustained overload at an early operator what it serves arrives too late.
    reserve_downstream: bool = True

    def __post_init__(self) -> None:
        for name in ("step_s", "stretch", "quantum"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise JellyBeanError(f"{name.replace('_s', '')} {value!r}: give a positive finite number")
        if self.duration_s is not None and not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise JellyBeanError(f"duration {self.duration_s!r} s: give a positive number of seconds")


@dataclass(frozen=True)
class Scenario:
    """What is simulated: the workflow on the plan's placement, as the runtime model sees it."""

    problem: Problem
    rp: RuntimeProblem
    running: dict[str, int]  # slot -> workers the plan runs
    deadline_s: float
    cameras: int
    plan_cost: float


def scale_cameras(inputs: Inputs, cameras: int) -> Inputs:
    """The same city with ``cameras`` streams in all: each site's streams scaled in proportion
    (largest remainders), a site left with none loses the source."""
    infra = inputs.infrastructure
    entries = [(i, name, at.count) for i, site in enumerate(infra.sites) for name, at in site.streams_at().items()]
    total = sum(n for _, _, n in entries)
    if cameras < 1:
        raise JellyBeanError(f"--cameras {cameras}: give at least 1")
    if total == 0:
        raise JellyBeanError(f"{inputs.paths['infrastructure']}: no site has cameras to scale")
    if cameras == total:
        return inputs
    exact = [n * cameras / total for _, _, n in entries]
    counts = [math.floor(x) for x in exact]
    for k in sorted(range(len(entries)), key=lambda k: (counts[k] - exact[k], k))[: cameras - sum(counts)]:
        counts[k] += 1
    per_site: dict[int, dict] = defaultdict(dict)
    for (i, name, _), n in zip(entries, counts):
        if n > 0:
            at = infra.sites[i].sources[name]
            per_site[i][name] = n if isinstance(at, int) else at.model_copy(update={"count": n})
    sites = tuple(site.model_copy(update={"sources": per_site.get(i, {})}) for i, site in enumerate(infra.sites))
    return Inputs(inputs.workflow, inputs.zoo, infra.model_copy(update={"sites": sites}), inputs.hardware,
                  {**inputs.paths})


def prepare(inputs: Inputs, *, cameras: int | None = None, time_limit: float = 60.0,
            elastic_tiers: frozenset[str] = frozenset({"cloud"})) -> Scenario:
    """Plan the workflow (the optimal strategy, one variant per operator, as `deploy` runs it) and
    build the runtime model over the plan's placement, as `runtime.Adapter` does."""
    from jellybean.planner.strategies import make_plan

    parity.not_yet_run(inputs.workflow, "simulating a workflow")
    if cameras is not None:
        inputs = scale_cameras(inputs, cameras)
    slo = inputs.workflow.slo
    if slo is None or not slo.latency_ms:
        raise JellyBeanError(f"{inputs.paths['workflow']}: slo.latency_ms is not set; the simulator counts items "
                             "that miss it as violations, so give the workflow a latency SLO")
    problem = build_problem(inputs)
    plan = make_plan(problem, "optimal", time_limit=time_limit, inputs=inputs.paths, mix=False)
    placement: dict[str, set[str]] = defaultdict(set)
    per_pool: dict[str, int] = defaultdict(int)
    for w in plan.workers:
        if w.count > 0:
            placement[w.operator].add(w.location)
            per_pool[w.pool] += w.count
    rp = RuntimeProblem.from_problem(problem, placement, floor=slo.min_accuracy, elastic_tiers=elastic_tiers)
    running = {slot.name: sum(per_pool.get(pool, 0) for pool, _ in slot.members) for slot in rp.slots}
    return Scenario(problem, rp, running, slo.latency_ms / 1000.0, sum(s.count for s in problem.streams),
                    plan.cost.total)


# -- the result ------------------------------------------------------------------------------------


@dataclass
class SimRun:
    """One policy over one trace. Per step (``t`` is the step's start): frames offered, and frames
    that ended in it (served on time, late, dropped), in frames per second; the accuracy of what
    was served (zoo product, the runtime model's), $/h, the phase of the decision in effect, and
    the mean end-to-end latency of what was served (ms, NaN when nothing was)."""

    policy: str
    step_s: float
    t: list[float] = field(default_factory=list)
    offered: list[float] = field(default_factory=list)
    served: list[float] = field(default_factory=list)
    late: list[float] = field(default_factory=list)
    dropped: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    cost: list[float] = field(default_factory=list)
    phase: list[str] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)
    offering_steps: int = 0  # steps with the trace running; those after are the queues draining
    dropped_by_reason: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def totals(self) -> dict:
        dt = self.step_s
        offered = sum(self.offered) * dt
        served, late, dropped = sum(self.served) * dt, sum(self.late) * dt, sum(self.dropped) * dt
        done = served + late
        acc = sum(a * (s + l) for a, s, l in zip(self.accuracy, self.served, self.late) if (s + l) > 0) * dt
        lat = sum(x * (s + l) for x, s, l in zip(self.latency_ms, self.served, self.late) if (s + l) > 0) * dt
        solved = [d["seconds"] for d in self.decisions if d["solved"]]
        return {
            "policy": self.policy,
            "frames_offered": offered,
            "frames_on_time": served,
            "frames_late": late,
            "frames_dropped": dropped,
            "dropped_by_reason": dict(self.dropped_by_reason),
            "violations": (late + dropped) / offered if offered > 0 else 0.0,
            "mean_accuracy": acc / done if done > 0 else None,
            "mean_cost_per_hour": statistics.fmean(self.cost[: self.offering_steps or None]) if self.cost else 0.0,
            "cost_per_1000_frames_on_time": (statistics.fmean(self.cost[: self.offering_steps or None]) *
                                             (self.offering_steps or len(self.t)) * dt / 3600 / served * 1000
                                             if served > 0 else None),
            "mean_latency_ms": lat / done if done > 0 else None,
            "decisions": len(self.decisions),
            "solves": len(solved),
            "decision_seconds_median": statistics.median(solved) if solved else None,
            "simulated_s": len(self.t) * dt,
            "wall_s": self.wall_s,
        }


# -- the model ---------------------------------------------------------------------------------------


class _Queue:
    __slots__ = ("cohorts", "tau", "mu", "s", "op", "var", "workers")

    def __init__(self, op: str, var: str, s: float, now: float) -> None:
        self.cohorts: deque[list[float]] = deque()  # [n, a0, a1, c0, c1]
        self.tau = now  # when the workers are next free
        self.mu = 0.0  # frames/s
        self.s = s  # seconds from the head to done
        self.op, self.var = op, var
        self.workers = 0


class _Run:
    def __init__(self, scenario: Scenario, trace: LoadTrace, options: AdaptOptions, settings: SimSettings) -> None:
        self.sc, self.trace, self.options, self.settings = scenario, trace, options, settings
        problem, rp = scenario.problem, scenario.rp
        self.rp = rp
        self.ops = rp.operators
        # The workflow as trees of single-input operators (a frame's items take every branch).
        self.children: dict[str, list[str]] = {op: [e.dst for e in problem.outputs(op)] for op in self.ops}
        self.fed: dict[str, list[str]] = {s: [e.dst for e in problem.outputs(s)] for s in problem.source_names}
        root: dict[str, str] = {}
        for op in self.ops:
            inputs = problem.inputs(op)
            if len(inputs) != 1:
                raise JellyBeanError(f"not supported: operator '{op}' has {len(inputs)} inputs; the simulator models "
                                     "workflows whose operators each take one input")
            src = inputs[0].src
            root[op] = src if src in self.fed else root[src]
        self.source_rate = {s: problem.source_rate(s) for s in self.fed}
        self.ipf = {op: problem.operator(op).rate / self.source_rate[root[op]] for op in self.ops}
        sinks: dict[str, int] = {}
        for op in reversed(self.ops):
            sinks[op] = sum(sinks[c] for c in self.children[op]) if self.children[op] else 1
        tree_sinks = {s: sum(sinks[op] for op in ops) for s, ops in self.fed.items()}
        self.weight = {op: sinks[op] / tree_sinks[root[op]] for op in self.ops}  # a frame's share at op
        self.fed_ops = [op for ops in self.fed.values() for op in ops]
        self.slot_of = {pool: slot.name for slot in rp.slots for pool, _ in slot.members}
        self.hardware = {slot.name: slot.hardware for slot in rp.slots}
        self.D = scenario.deadline_s
        self.drop_at, self.drop_reason = ((scenario.deadline_s, "deadline") if settings.deadlines
                                          else (DROP_AFTER_S, "late"))
        cams = trace.values if trace.mode == "cameras" else ()
        self.max_cameras = max(cams) if cams else 0
        self.policy = Policy(rp, options.policy, startup_s=options.startup_s, elastic=options.elastic,
                             utilisation=options.utilisation, running=scenario.running)
        self.demand = options.ewma()
        self.cadence = Cadence(options.period_s)
        self.queues: dict[tuple[str, str, str], _Queue] = {}
        self.route: dict[str, list[tuple[_Queue, float]]] = {}
        self.result = SimRun(options.policy, settings.step_s)
        self.dropped_by: dict[str, float] = defaultdict(float)
        self.arrived = {op: 0.0 for op in self.fed_ops}  # frames since the last report
        self.last_report_t = 0.0
        self.last_q: float | None = None
        self.cost = self.policy.base.cost
        self.phase = "plan"
        # What runs before the first decision: the plan for the planned load.
        loads, _, _ = most_accurate_first(rp, self.policy.base.workers, rp.base_rate, options.utilisation)
        self._apply(self.policy.base.workers, loads, 0.0)

    # -- routing -------------------------------------------------------------------------------
    def _apply(self, workers: Mapping[tuple[str, str, str], int], loads: Mapping[tuple[str, str, str], float],
               now: float) -> None:
        """Workers and loads per (slot, op, variant) now in effect; items of queues left without
        workers move to the operator's other queues."""
        rp = self.rp
        for key, q in self.queues.items():
            q.workers = 0
        for key, n in workers.items():
            q = self.queues.get(key)
            if q is None:
                slot, op, var = key
                cap = self.sc.problem.capability(op, var, self.hardware[slot])
                q = self.queues[key] = _Queue(op, var, cap.latency_ms / 1000.0 if cap else 0.0, now)
            q.workers = n
            q.mu = n * rp.capacity[key] / self.ipf[key[1]]
        for op in self.ops:
            keys = [k for k in self.queues if k[1] == op and self.queues[k].workers > 0]
            total = sum(loads.get(k, 0.0) for k in keys)
            if total > EPS:
                share = {k: loads.get(k, 0.0) / total for k in keys}
            else:
                cap = sum(self.queues[k].mu for k in keys)
                share = {k: self.queues[k].mu / cap for k in keys} if cap > 0 else {}
            self.route[op] = [(self.queues[k], f) for k, f in share.items() if f > 0]
        self.rest = {}  # op -> what the agents keep for after it: a hop and the slowest service, per child
        for op in reversed(self.ops):
            self.rest[op] = max((HOP_MS / 1000.0 + max((q.s for q, _ in self.route.get(c, ())), default=0.0)
                                 + self.rest[c] for c in self.children[op]), default=0.0)
        for key, q in list(self.queues.items()):
            if q.workers == 0:
                if q.cohorts:
                    for c in q.cohorts:
                        self._arrive(key[1], c, now)
                del self.queues[key]
            elif q.tau < now:
                q.tau = now

    def _arrive(self, op: str, cohort: list[float], now: float) -> None:
        n = cohort[0]
        if n <= EPS:
            return
        targets = self.route.get(op)
        if not targets:
            self._drop(op, n, "no-worker")
            return
        for q, f in targets:
            q.cohorts.append([n * f, *cohort[1:]])

    def _drop(self, op: str, n: float, reason: str) -> None:
        mass = n * self.weight[op]
        self.dropped_by[reason] += mass
        self.step_dropped += mass

    # -- one step ------------------------------------------------------------------------------
    def offered_fraction(self, t: float) -> float:
        """The trace's load at simulated time ``t``, as a multiple of the planned frames per second."""
        value = self.trace.value_at(t / self.settings.stretch)
        if self.trace.mode == "multiplier":
            return value
        if self.settings.relative_cameras:
            return value / self.max_cameras if self.max_cameras > 0 else 0.0
        return min(value, self.sc.cameras) / self.sc.cameras

    def step(self, t0: float, t1: float, offer: bool) -> None:
        self.step_dropped = 0.0
        self.step_served = 0.0
        self.step_late = 0.0
        self.step_latency = 0.0  # Σ n × latency (s)
        served_by: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        incoming: dict[str, list[list[float]]] = defaultdict(list)
        offered = 0.0
        if offer:
            m = self.offered_fraction(t0)
            for src, ops in self.fed.items():
                frames = self.source_rate[src] * m * (t1 - t0)
                offered += frames
                for op in ops:
                    incoming[op].append([frames, t0, t1, t0, t1])
                    self.arrived[op] += frames
        for op in self.ops:
            batch = incoming.pop(op, None)
            if batch:
                self._arrive(op, _merge(batch), t0)
            outputs: list[list[float]] = []
            sink = not self.children[op]
            for q, _ in self.route.get(op, ()):
                if q.cohorts:
                    out = self._serve(q, t1, sink)
                    if out is not None:
                        served_by[op][q.var] += out[0]
                        scale = self.rp.scale.get((op, q.var), 1.0)
                        if scale < 1.0 and not sink:
                            out = self._pass_empty(op, out, scale)
                        outputs.append(out)
            if outputs and not sink:
                merged = _merge(outputs)
                for child in self.children[op]:
                    incoming[child].append(list(merged))
        shares = {op: {v: n / sum(vs.values()) for v, n in vs.items()} for op, vs in served_by.items()
                  if sum(vs.values()) > 0}
        last = self.policy.last
        for op in self.ops:
            if op not in shares and last is not None:
                shares[op] = last.shares.get(op, {})
            elif op not in shares:
                shares[op] = {k[2]: 1.0 for k in self.policy.base.workers if k[1] == op}
        r, dt = self.result, t1 - t0
        done = self.step_served + self.step_late
        r.t.append(t0)
        r.offered.append(offered / dt)
        r.served.append(self.step_served / dt)
        r.late.append(self.step_late / dt)
        r.dropped.append(self.step_dropped / dt)
        r.accuracy.append(routed_accuracy(self.rp, shares) if done > 0 else math.nan)
        r.cost.append(self.cost)
        r.phase.append(self.phase)
        r.latency_ms.append(1000.0 * self.step_latency / done if done > 0 else math.nan)

    def _serve(self, q: _Queue, t1: float, sink: bool) -> list[float] | None:
        """Serve ``q`` FIFO until ``t1``; the merged cohort of what it finished (None: nothing)."""
        mu, s = q.mu, q.s
        if mu <= 0:
            return None
        horizon = self.drop_at - (s if self.settings.deadlines else 0.0)  # latest head time − capture
        if self.settings.deadlines and self.settings.reserve_downstream:
            horizon -= self.rest[q.op]
        tau = q.tau
        out_n, h_lo, h_hi, c_lo, c_hi = 0.0, math.inf, -math.inf, math.inf, -math.inf
        dropped = 0.0
        weight = self._w = self.weight[q.op]
        D = self.D
        cohorts = q.cohorts
        while cohorts:
            coh = cohorts[0]
            n, a0, a1, c0, c1 = coh
            if a0 >= t1:
                break
            alpha, gamma, sigma = a1 - a0, c1 - c0, n / mu
            u = 0.0
            for _ in range(64):  # a few linear pieces per cohort; the bound only guards rounding
                if u >= 1.0 - 1e-9:
                    u = 1.0
                    break
                a = a0 + u * alpha
                c = c0 + u * gamma
                late_at = c + horizon  # the head time after which item u is dropped
                if tau < a:
                    if a >= t1:
                        break
                    tau = a
                if tau >= t1:
                    break
                if a > late_at + 1e-12:
                    # Items that arrive already past their deadline, up to where arrivals catch up.
                    if gamma > alpha:
                        nu = min(1.0, u + (a - late_at) / (gamma - alpha))
                    else:
                        nu = 1.0
                    dropped += n * (nu - u)
                    u = nu
                    continue
                if tau > late_at + 1e-12:
                    # The head is late: skip to the first item that can still make it.
                    nu = min(1.0, u + (tau - late_at) / gamma) if gamma > 0 else 1.0
                    dropped += n * (nu - u)
                    u = nu
                    continue
                tracking = tau <= a + 1e-12 and alpha > sigma
                slope = alpha if tracking else sigma
                if slope > gamma and tau >= late_at - 1e-12 and sigma > gamma:
                    # Riding the deadline: serve at full rate, items between those served are dropped.
                    du = min(1.0 - u, (t1 - tau) / gamma)
                    if du <= 0:
                        break
                    got = n * du * gamma / sigma
                    out_n += got
                    dropped += n * du - got
                    h_lo, h_hi = min(h_lo, tau), max(h_hi, tau + gamma * du)
                    c_lo, c_hi = min(c_lo, c), max(c_hi, c + gamma * du)
                    if sink:  # head and capture advance together: a constant latency
                        self._done(got, tau + s - c, 0.0, D)
                    tau += gamma * du
                    u += du
                    continue
                du = 1.0 - u
                if slope > 0:
                    du = min(du, (t1 - tau) / slope)
                if slope > gamma:
                    du = min(du, (late_at - tau) / (slope - gamma))
                if not tracking and alpha > sigma and tau > a:
                    du = min(du, (tau - a) / (alpha - sigma))
                if du <= 1e-12:
                    du = min(1.0 - u, 1e-9)  # a breakpoint: step over it
                got = n * du
                out_n += got
                head_end = tau + slope * du
                h_lo, h_hi = min(h_lo, tau), max(h_hi, head_end)
                c_lo, c_hi = min(c_lo, c), max(c_hi, c + gamma * du)
                if sink:
                    lat0 = tau + s - c
                    self._done(got, lat0, (head_end + s - (c + gamma * du)) - lat0, D)
                tau = head_end
                u += du
            if u >= 1.0:
                cohorts.popleft()
            else:
                if u > 0:
                    coh[0] = n * (1.0 - u)
                    coh[1] = a0 + u * alpha
                    coh[3] = c0 + u * gamma
                break
        q.tau = tau
        if dropped > 0:
            mass = dropped * weight
            self.dropped_by[self.drop_reason] += mass
            self.step_dropped += mass
        if out_n <= EPS:
            return None
        if sink:
            return [out_n]
        return [out_n, h_lo + s, h_hi + s, c_lo, c_hi]

    def _pass_empty(self, op: str, out: list[float], scale: float) -> list[float]:
        """A strided variant's output: ``scale`` of the frames carry items on; the rest carry
        nothing and are done when it passes them on (the agents queue them behind real items
        downstream, briefly; the fluid model does not)."""
        n, h0, h1, c0, c1 = out
        self._w = self.weight[op]
        self._done(n * (1.0 - scale), h0 - c0, (h1 - c1) - (h0 - c0), self.D)
        return [n * scale, h0, h1, c0, c1]

    def _done(self, n: float, lat0: float, slope: float, deadline: float) -> None:
        """``n`` frames' items finished at a sink; latency runs linearly from lat0 to lat0 + slope."""
        mass = n * self._w
        mean = lat0 + 0.5 * slope
        self.step_latency += mass * mean
        lat1 = lat0 + slope
        if max(lat0, lat1) <= deadline + 1e-9:
            late = 0.0
        elif min(lat0, lat1) > deadline:
            late = 1.0
        else:
            frac_over = (max(lat0, lat1) - deadline) / abs(slope)
            late = frac_over
        self.step_late += mass * late
        self.step_served += mass * (1.0 - late)

    # -- decisions -----------------------------------------------------------------------------
    def report(self, now: float) -> None:
        """As `runtime.Adapter.step` on an agents' report: the multiplier from the arrivals at the
        source-fed operators since the last report, smoothed; a decision when the `Cadence` says
        so; none while idle.

        Decisions are cached: the multiplier is rounded to ``quantum`` (1 % of the planned load by
        default), and when it is the one of the last decision and no elastic worker is booting,
        the policy would decide the same again (same demand, same usable workers), so the last
        decision stands without a solve. A day at a 5 s period is some 28 800 decisions; most of
        them are such repeats."""
        rp, window = self.rp, max(now - self.last_report_t, EPS)
        measured = {op: self.arrived[op] * self.ipf[op] / window for op in self.fed_ops}
        self.arrived = {op: 0.0 for op in self.fed_ops}
        self.last_report_t = now
        if not self.cadence.due(now, True):
            return
        ratios = [measured.get(op, 0.0) / rp.base_rate[op] for op in self.fed_ops if rp.base_rate[op] > 0]
        if not ratios or sum(ratios) / len(ratios) < IDLE_FRACTION:
            return
        m = self.demand.observe("load", sum(ratios) / len(ratios), now)
        q = round(m / self.settings.quantum) * self.settings.quantum
        booting = any(self.policy.fleet.booting.values())
        solved = not (q == self.last_q and not booting and self.policy.last is not None)
        if solved:
            decision = self.policy.decide({op: r * q for op, r in rp.base_rate.items()}, now)
            self.last_q = q
            self._apply(*self._per_slot(decision), now)
            self.cost, self.phase = decision.cost, decision.phase
        else:
            decision = self.policy.last
        self.result.decisions.append({
            "t": now, "multiplier": m, "quantised": q, "solved": solved, "phase": decision.phase,
            "reason": decision.reason, "accuracy": decision.accuracy, "served": decision.served,
            "cost_per_hour": decision.cost, "seconds": decision.seconds if solved else 0.0,
            "booting": dict(decision.booting)})

    def _per_slot(self, decision: Decision) -> tuple[dict, dict]:
        workers: dict[tuple[str, str, str], int] = defaultdict(int)
        loads: dict[tuple[str, str, str], float] = defaultdict(float)
        for (pool, op, var), n in decision.workers.items():
            workers[self.slot_of[pool], op, var] += n
        for (pool, op, var), x in decision.loads.items():
            loads[self.slot_of[pool], op, var] += x
        return dict(workers), dict(loads)

    def in_flight(self) -> float:
        return sum(c[0] * self.weight[q.op] for q in self.queues.values() for c in q.cohorts)


def _merge(cohorts: list[list[float]]) -> list[float]:
    if len(cohorts) == 1:
        return cohorts[0]
    return [sum(c[0] for c in cohorts), min(c[1] for c in cohorts), max(c[2] for c in cohorts),
            min(c[3] for c in cohorts), max(c[4] for c in cohorts)]


def trace_duration(trace: LoadTrace, settings: SimSettings) -> float:
    if settings.duration_s is not None:
        return settings.duration_s
    times = trace.times
    length = times[-1] + (times[-1] - times[-2]) if len(times) > 1 else 60.0
    return length * settings.stretch


def simulate(scenario: Scenario, trace: LoadTrace, options: AdaptOptions = AdaptOptions(),
             settings: SimSettings = SimSettings(), progress: Callable[[float, float], None] | None = None) -> SimRun:
    """Run ``options.policy`` over ``trace``; then let the queues drain."""
    started = time.perf_counter()
    run = _Run(scenario, trace, options, settings)
    dt, duration = settings.step_s, trace_duration(trace, settings)
    steps = max(1, math.ceil(duration / dt - 1e-9))
    next_report = REPORT_S  # the agents report what arrived every REPORT_S
    report_every = max(1, steps // 200)
    for k in range(steps):
        t0, t1 = k * dt, min((k + 1) * dt, duration)
        run.step(t0, t1, True)
        if t1 >= next_report - 1e-9:
            next_report += REPORT_S
            run.report(t1)
        if progress is not None and (k % report_every == 0 or k == steps - 1):
            progress(t1, duration)
    run.result.offering_steps = steps
    t = duration
    while run.in_flight() > EPS and t < duration + DRAIN_LIMIT_S:
        run.step(t, t + dt, False)
        t += dt
    left = run.in_flight()
    if left > EPS:
        run.dropped_by["unfinished"] += left
        run.result.dropped[-1] += left / dt
        run.queues.clear()
    run.result.dropped_by_reason = dict(run.dropped_by)
    run.result.wall_s = time.perf_counter() - started
    _check_conservation(run.result)
    return run.result


def _check_conservation(r: SimRun) -> None:
    dt = r.step_s
    offered = sum(r.offered) * dt
    ended = (sum(r.served) + sum(r.late) + sum(r.dropped)) * dt
    if abs(offered - ended) > 1e-6 * max(1.0, offered):
        raise JellyBeanError(f"internal error: the simulation offered {offered:.6g} frames and ended {ended:.6g} "
                             "(served on time + late + dropped); please report it")
