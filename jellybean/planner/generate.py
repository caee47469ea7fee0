"""Random planning problems for tests and benchmarks: plausible, deterministic and feasible.

``random_problem`` builds a city-like deployment (edge sites with cameras, hubs, edge datacenters,
a cloud region) and a vision workflow with a zoo of variants; it returns only instances the
greedy baseline can place, so every strategy has something to compare against. ``tiny_problem``
builds instances small enough to solve by exhaustive enumeration (tests/planner/brute_force.py).

Both are pure functions of their arguments: the same seed gives the same problem on every
machine (numpy's PCG64 generator, seeded with the seed and, on a retry, an attempt number).
Figures are shaped after tiers/ and configs/aicity/: relative speeds (an A10G ~2.2x a T4, a T4
~5-7x an Orin Nano), prices ($/h, owned devices amortised), frames of ~60 KB at 10 fps, crops of
~8 KB, embeddings of ~1 KB; they are plausible, not measured.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np

from jellybean.errors import JellyBeanError
from jellybean.planner.baselines import greedy_restriction
from jellybean.planner.extract import extract_plan
from jellybean.planner.model import PlanningModel
from jellybean.planner.problem import (
    ANY,
    Accuracy,
    AccuracyTable,
    Capability,
    Edge,
    Link,
    Location,
    Operator,
    Pool,
    Problem,
    Stream,
)
from jellybean.planner.solution import run

TIER_NAMES: tuple[str, ...] = ("edge", "hub", "edge-dc", "cloud")
MBPS = 1e6 / 8 / 1024  # KB/s in one Mbps
FPS = 10.0  # frames/s of one camera (CityFlow videos are 10 fps)
MAX_ATTEMPTS = 40


class GenerationError(JellyBeanError):
    """No instance with the requested shape passed the feasibility check."""


# -- catalogue ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HardwareKind:
    name: str
    tier: str
    price: float  # $/h per worker
    memory_mb: float
    neural: float  # throughput on neural operators relative to one T4
    light: float  # throughput on CPU-bound operators relative to one mini-PC
    gpu: bool


HARDWARE: dict[str, tuple[HardwareKind, ...]] = {
    "edge": (
        HardwareKind("jetson-orin-nano-8gb", "edge", 0.0270, 5500, 0.16, 0.35, True),
        HardwareKind("jetson-orin-nx-16gb", "edge", 0.0418, 13000, 0.30, 0.55, True),
    ),
    "hub": (
        HardwareKind("hub-x86-minipc", "hub", 0.0387, 28000, 0.06, 1.0, False),
        HardwareKind("hub-rtx-a2000", "hub", 0.0950, 12000, 0.55, 1.0, True),
    ),
    "edge-dc": (
        HardwareKind("edc-cpu-server", "edge-dc", 0.308, 60000, 0.22, 3.0, False),
        HardwareKind("edc-t4-server", "edge-dc", 0.422, 15360, 1.0, 1.6, True),
    ),
    "cloud": (
        HardwareKind("c6i.xlarge", "cloud", 0.17, 6500, 0.09, 1.2, False),
        HardwareKind("c6i.2xlarge", "cloud", 0.34, 14000, 0.18, 2.4, False),
        HardwareKind("g4dn.xlarge", "cloud", 0.526, 15360, 1.0, 1.2, True),
        HardwareKind("g5.xlarge", "cloud", 1.006, 23028, 2.2, 1.2, True),
    ),
}


@dataclass(frozen=True)
class OperatorKind:
    name: str
    neural: bool
    capacity: float  # items/s of the mid variant on one T4 (neural) or one mini-PC (light)
    memory_mb: float  # of the mid variant
    out_kb: float  # KB per output item
    ratio: tuple[float, float]  # output items per input item
    accuracy: tuple[float, float]  # factor of the cheapest and of the best variant


OPERATORS: tuple[OperatorKind, ...] = (
    OperatorKind("detect", True, 110.0, 2600.0, 8.0, (2.5, 5.0), (0.66, 0.96)),  # frames -> crops
    OperatorKind("reid", True, 700.0, 1200.0, 1.0, (1.0, 1.0), (0.74, 0.97)),  # crops -> embeddings
    OperatorKind("track", False, 2500.0, 400.0, 0.6, (0.2, 0.4), (0.90, 0.995)),  # -> tracklet updates
    OperatorKind("attributes", True, 900.0, 900.0, 0.4, (1.0, 1.0), (0.82, 0.99)),
    OperatorKind("associate", False, 1200.0, 800.0, 0.3, (0.5, 1.0), (0.88, 0.995)),
    OperatorKind("index", False, 4000.0, 500.0, 0.2, (1.0, 1.0), (0.95, 1.0)),
)
SIZES = ("n", "s", "m", "l", "x", "xx", "xxx", "xxxx")

# share of the workers per tier, for 2, 3 and 4 tiers
TIER_SHARES: dict[int, tuple[float, ...]] = {2: (0.65, 0.35), 3: (0.5, 0.3, 0.2), 4: (0.45, 0.25, 0.15, 0.15)}
TIERS_PRESENT: dict[int, tuple[str, ...]] = {2: ("edge", "cloud"), 3: ("edge", "hub", "cloud"), 4: TIER_NAMES}


def _split(rng: np.random.Generator, total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` positive integers (total >= parts), randomly."""
    weights = rng.uniform(0.6, 1.4, parts)
    raw = 1 + (total - parts) * weights / weights.sum()
    out = [int(math.floor(r)) for r in raw]
    for i in np.argsort(-(raw - np.floor(raw)))[: total - sum(out)]:
        out[int(i)] += 1
    return out


# -- random_problem -------------------------------------------------------------------------------


def random_problem(
    seed: int,
    *,
    workers: int,
    tiers: int = 4,
    operators: int = 6,
    variants: int = 6,
    transit: bool = True,
    latency: bool = False,
    branch: bool = False,
    utilisation: tuple[float, float] = (0.45, 0.6),
    check: bool = True,
) -> Problem:
    """A plausible instance with about ``workers`` workers over ``tiers`` tiers.

    The workflow is a chain camera -> detect -> reid -> track -> attributes -> associate -> index
    (cut to ``operators``, named ``stage<i>`` past six); with ``branch`` one operator reads
    detect's crops beside the chain and the next one merges both. Every operator has ``variants``
    variants, cheapest first, whose accuracy factors rise with cost but not monotonically. The
    camera count is set so that the mid variants would keep ``utilisation`` of the whole fleet
    busy; the accuracy target is met by the mid combination. ``latency`` adds a latency bound a
    little above the greedy plan's. With ``check`` (the default) the instance is returned only
    when the greedy baseline places it (with the latency bound, if any); otherwise it is redrawn
    from a sub-seed, so a seed always maps to the same instance.
    """
    if tiers not in TIERS_PRESENT:
        raise ValueError(f"tiers must be 2, 3 or 4, not {tiers}")
    if operators < 1 or variants < 1 or workers < 2 * tiers:
        raise ValueError("need at least one operator, one variant and two workers per tier")
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng([seed, workers, tiers, operators, variants, attempt])
        problem = _draw(rng, seed, workers, tiers, operators, variants, transit, branch, utilisation)
        if not check:
            return problem
        placed = _greedy_check(problem, latency, rng)
        if placed is not None:
            return placed
    raise GenerationError(
        f"no instance for seed {seed} with {workers} workers passed the greedy check in {MAX_ATTEMPTS} draws; "
        "give more workers or a lower utilisation"
    )


def _greedy_check(problem: Problem, latency: bool, rng: np.random.Generator) -> Problem | None:
    """The problem (with a latency bound when asked) if the greedy baseline can place it, else None."""
    try:
        restriction = greedy_restriction(problem)
    except JellyBeanError:
        return None
    _, solution = run(PlanningModel(problem, restriction), time_limit=60)
    if solution is None:
        return None
    if not latency:
        return problem
    plan = extract_plan(problem, solution, "greedy")
    if plan.predicted.latency_ms is None:
        return None
    bounded = replace(problem, latency_bound_ms=round(plan.predicted.latency_ms * float(rng.uniform(1.1, 1.4)), 1))
    _, solution = run(PlanningModel(bounded, restriction), time_limit=60)
    return bounded if solution is not None else None


def _operator_kinds(n: int) -> list[OperatorKind]:
    kinds = list(OPERATORS[:n])
    for i in range(len(kinds), n):
        base = OPERATORS[2 + (i % 4)]
        kinds.append(OperatorKind(f"stage{i}", base.neural, base.capacity, base.memory_mb, base.out_kb * 0.8,
                                  (0.7, 1.0), base.accuracy))
    return kinds


def _inputs(n: int, branch: bool) -> tuple[list[list[int]], list[str]]:
    """Inputs of every operator (-1: the camera) and its join."""
    inputs = [[i - 1] for i in range(n)]
    joins = ["zip"] * n
    if branch and n >= 3:
        b = min(3, n - 1)
        inputs[b] = [0]  # reads detect's output beside the chain
        if b + 1 < n:
            inputs[b + 1] = [b - 1, b]  # merges the chain and the branch
            joins[b + 1] = "merge"
    return inputs, joins


def _draw(
    rng: np.random.Generator,
    seed: int,
    workers: int,
    tiers: int,
    n_ops: int,
    n_vars: int,
    transit: bool,
    branch: bool,
    utilisation: tuple[float, float],
) -> Problem:
    present = TIERS_PRESENT[tiers]
    tier_of = {name: i for i, name in enumerate(present)}

    # -- infrastructure: locations and pools ----------------------------------------------------
    budgets = dict(zip(present, (max(1, round(workers * s)) for s in TIER_SHARES[tiers])))
    locations: list[Location] = []
    pools: list[Pool] = []

    def add_pools(loc: str, kinds: list[HardwareKind], total: int) -> None:
        for kind, count in zip(kinds, _split(rng, total, len(kinds))):
            pools.append(Pool(f"{loc}/{kind.name}", loc, kind.name, count, kind.price, kind.memory_mb))

    edge_sites: list[str] = []
    left = budgets["edge"]
    while left > 0:
        name = f"site-{len(edge_sites) + 1:02d}"
        kinds = list(HARDWARE["edge"]) if rng.random() < 0.35 else [HARDWARE["edge"][int(rng.integers(2))]]
        total = min(left, int(rng.integers(len(kinds), 3 * len(kinds) + 1)))
        kinds = kinds[:total]
        edge_sites.append(name)
        locations.append(Location(name, tier_of["edge"], "edge"))
        add_pools(name, kinds, total)
        left -= total

    def tier_sites(tier: str, prefix: str, n: int) -> list[str]:
        n = max(1, min(n, budgets[tier]))
        names = [f"{prefix}-{i + 1}" if n > 1 or prefix != "cloud" else "cloud" for i in range(n)]
        for name, total in zip(names, _split(rng, budgets[tier], n)):
            locations.append(Location(name, tier_of[tier], tier))
            kinds = list(HARDWARE[tier])
            if tier == "hub" and rng.random() < 0.4:
                kinds = kinds[:1]  # CPU-only hub
            if tier == "cloud" and len(kinds) > total:
                kinds = [kinds[int(i)] for i in sorted(rng.choice(len(kinds), total, replace=False))]
            add_pools(name, kinds[:total], total)
        return names

    hubs = tier_sites("hub", "hub", math.ceil(len(edge_sites) / 4)) if "hub" in present else []
    edcs = tier_sites("edge-dc", "edc", 1 if workers < 150 else 2) if "edge-dc" in present else []
    clouds = tier_sites("cloud", "cloud", 1)

    # -- workflow: operators, variants, rates, sizes ----------------------------------------------
    kinds = _operator_kinds(n_ops)
    inputs, joins = _inputs(n_ops, branch)
    mid = n_vars // 2
    spread = np.exp(np.linspace(math.log(0.35), math.log(2.6), n_vars)) if n_vars > 1 else np.ones(1)
    out_ratio = {-1: 1.0, **{i: float(rng.uniform(*k.ratio)) for i, k in enumerate(kinds)}}  # items out per item in
    hw_kinds = {k.name: k for tier in present for k in HARDWARE[tier]}

    capabilities: dict[tuple[str, str, str], Capability] = {}
    factors: dict[tuple[str, str], float] = {}
    names: list[list[str]] = []
    for i, k in enumerate(kinds):
        w = spread / spread[mid] * np.exp(rng.normal(0.0, 0.08, n_vars))  # relative work per item
        w.sort()
        vnames = [f"{k.name}-{SIZES[j // 2] if j // 2 < len(SIZES) else j // 2}-{'int8' if j % 2 == 0 else 'fp16'}"
                  for j in range(n_vars)]
        names.append(vnames)
        lo, hi = k.accuracy
        lo, hi = lo + rng.normal(0, 0.02), min(1.0, hi + rng.normal(0, 0.01))
        for j, v in enumerate(vnames):
            t = j / (n_vars - 1) if n_vars > 1 else 1.0
            a = lo + (hi - lo) * t**0.7 + rng.normal(0.0, 0.012)
            factors[(k.name, v)] = float(np.clip(a, 0.51, 1.0))
        for hw in hw_kinds.values():
            speed = (hw.neural if k.neural else hw.light) * math.exp(rng.normal(0.0, 0.15))
            for j, v in enumerate(vnames):
                if k.neural and not hw.gpu and j % 2 == 1:
                    continue  # fp16 has no fast CPU kernels: never deployed on CPU-only machines
                capacity = k.capacity * speed / w[j] * math.exp(rng.normal(0.0, 0.05))
                batch = 4 if (k.neural and hw.gpu) else 1
                capabilities[(k.name, v, hw.name)] = Capability(
                    capacity=round(capacity, 3),
                    latency_ms=round(1000.0 * batch / capacity, 3),
                    batch=batch,
                    memory_mb=round(k.memory_mb * w[j] ** 0.7, 1),
                )

    # Items per camera frame every operator handles.
    per_frame: list[float] = []
    for i in range(n_ops):
        offered = [(1.0 if s < 0 else per_frame[s]) * out_ratio[s] for s in inputs[i]]
        per_frame.append(sum(offered) if joins[i] == "merge" else min(offered))

    # Cameras: enough that the mid variants keep ``utilisation`` of the fleet busy.
    fleet = []
    for i, k in enumerate(kinds):
        v = names[i][mid]
        fleet.append(sum(p.count * capabilities[(k.name, v, p.hardware)].capacity for p in pools
                         if (k.name, v, p.hardware) in capabilities
                         and capabilities[(k.name, v, p.hardware)].memory_mb <= p.memory_mb))
    need_per_frame = sum(r / f for r, f in zip(per_frame, fleet))
    frames = float(rng.uniform(*utilisation)) / need_per_frame
    cameras = max(len(edge_sites), round(frames / FPS))
    edge_workers = {s: sum(p.count for p in pools if p.location == s) for s in edge_sites}
    weights = np.array([edge_workers[s] for s in edge_sites], float) * rng.uniform(0.5, 1.5, len(edge_sites))
    counts = sorted(_split(rng, cameras, len(edge_sites)), reverse=True)
    per_site = [0] * len(edge_sites)
    for rank, site in enumerate(np.argsort(-weights)):  # more cameras where there are more devices
        per_site[int(site)] = counts[rank]
    streams = tuple(Stream("camera", s, FPS * c, c) for s, c in zip(edge_sites, per_site))
    total_frames = FPS * sum(per_site)

    operator_list = tuple(
        Operator(k.name, tuple(names[i]), round(total_frames * per_frame[i], 6), joins[i]) for i, k in enumerate(kinds)
    )
    rate = {"camera": total_frames, **{o.name: o.rate for o in operator_list}}

    frame_kb = float(rng.uniform(45, 75))
    edges: list[Edge] = []
    for i, k in enumerate(kinds):
        for s in inputs[i]:
            src = "camera" if s < 0 else kinds[s].name
            if joins[i] == "merge":
                e_rate = rate[src] * out_ratio[s]
            else:
                e_rate = rate[k.name]
            sizes: dict[tuple[str, str], float] = {}
            if s < 0:
                item_kb = frame_kb
                if rng.random() < 0.5:  # small detectors take downscaled frames
                    for j, v in enumerate(names[i]):
                        sizes[(ANY, v)] = round(frame_kb * (0.45 + 0.55 * j / max(1, n_vars - 1)), 3)
            else:
                item_kb = kinds[s].out_kb * float(rng.uniform(0.8, 1.25))
                if kinds[s].neural or rng.random() < 0.3:  # bigger models: larger crops, longer embeddings
                    for j, v in enumerate(names[s]):
                        sizes[(v, ANY)] = round(item_kb * (0.6 + 0.8 * j / max(1, n_vars - 1)), 4)
            edges.append(Edge(src, k.name, round(e_rate, 6), round(item_kb, 4), sizes))

    # -- links: upward, free at the edge, dearer towards the cloud --------------------------------
    parent: dict[str, str] = {}
    upper = hubs or edcs or clouds
    for i, s in enumerate(edge_sites):
        parent[s] = upper[i * len(upper) // len(edge_sites)]
    for i, h in enumerate(hubs):
        parent[h] = (edcs or clouds)[i * len(edcs or clouds) // len(hubs)]
    for d in edcs:
        parent[d] = clouds[0]
    raw_kbps = {s.location: s.rate * frame_kb for s in streams}
    hop: dict[tuple[str, str], Link] = {}
    for s in edge_sites:
        bw = raw_kbps[s] * float(rng.uniform(0.5, 1.5))
        hop[(s, parent[s])] = Link(s, parent[s], 0.0, round(bw, 1), round(float(rng.uniform(1, 4)), 2))
    for h in hubs:
        cost = float(rng.uniform(0.005, 0.015)) if parent[h] in edcs else float(rng.uniform(0.03, 0.09))
        hop[(h, parent[h])] = Link(h, parent[h], round(cost, 4), round(float(rng.uniform(300, 1000)) * MBPS, 1),
                                   round(float(rng.uniform(3, 8)), 2))
    for d in edcs:
        hop[(d, clouds[0])] = Link(d, clouds[0], round(float(rng.uniform(0.02, 0.05)), 4),
                                   round(float(rng.uniform(1000, 5000)) * MBPS, 1), round(float(rng.uniform(12, 25)), 2))
    shortcuts: dict[tuple[str, str], Link] = {}
    if edcs:
        for h in hubs:  # the hub's metered Internet uplink straight to the cloud
            shortcuts[(h, clouds[0])] = Link(h, clouds[0], round(float(rng.uniform(0.05, 0.1)), 4),
                                             round(float(rng.uniform(100, 400)) * MBPS, 1),
                                             round(float(rng.uniform(20, 40)), 2))
    links = dict(hop)
    links.update(shortcuts)
    if not transit:
        # Items go straight from producer to consumer: a direct link to every location above.
        for loc in [*edge_sites, *hubs, *edcs]:
            path, at = [], loc
            while at in parent:
                path.append(hop[(at, parent[at])])
                at = parent[at]
                key = (loc, at)
                if key in links:
                    continue
                links[key] = Link(loc, at, round(sum(l.cost_per_gb for l in path), 4),
                                  min(l.bandwidth_kbps for l in path), round(sum(l.latency_ms for l in path), 2))

    # -- accuracy target: met by the mid combination ----------------------------------------------
    accuracy = Accuracy(factors=factors)
    mid_assignment = {k.name: names[i][mid] for i, k in enumerate(kinds)}
    target = math.floor(accuracy.of(mid_assignment) * 0.995 * 1e4) / 1e4
    accuracy = Accuracy(target=target, factors=factors)

    return Problem(
        name=f"random-s{seed}-w{workers}-t{tiers}-o{n_ops}-v{n_vars}{'' if transit else '-direct'}",
        locations=tuple(locations),
        pools=tuple(pools),
        streams=streams,
        operators=operator_list,
        edges=tuple(edges),
        capabilities=capabilities,
        links=tuple(links.values()),
        accuracy=accuracy,
        transit=transit,
        source_tier={"camera": 0},
    )


# -- tiny_problem ---------------------------------------------------------------------------------

TINY_SALT = 0x7179


def tiny_problem(seed: int) -> Problem:
    """An instance small enough for exhaustive enumeration: 2-3 operators of 2 variants, 2-4 pools
    of at most 2 workers over 2-3 locations, transit or direct routing, sometimes a binding
    bandwidth limit, sometimes an accuracy table instead of per-variant factors, and sometimes
    a join (zip or merge). Not checked for feasibility: some instances have no plan."""
    rng = np.random.default_rng([TINY_SALT, seed])
    n_ops = int(rng.integers(2, 4))
    n_locs = int(rng.integers(2, 4))
    transit = bool(rng.random() < 0.5)
    shape = "chain"
    if n_ops == 3:
        shape = str(rng.choice(["chain", "fork", "join"]))

    locations = tuple(Location(f"L{i}", i, TIER_NAMES[min(i, 3)]) for i in range(n_locs))
    n_pools = int(rng.integers(2, 5))
    pool_locs = sorted(f"L{i}" if i < n_locs else f"L{int(rng.integers(n_locs))}" for i in range(n_pools))
    pools = []
    for i, loc in enumerate(pool_locs):
        pools.append(Pool(
            name=f"{loc}/hw{i}",
            location=loc,
            hardware=f"hw{i}",
            count=1 if rng.random() < 0.3 else 2,
            price=round(float(rng.uniform(0.05, 0.4)), 4),
            memory_mb=float(rng.choice([2000.0, 4000.0, 8000.0])),
        ))

    # Streams: at L0, sometimes also at L1.
    streams = [Stream("cam", "L0", round(float(rng.uniform(5, 20)), 3), 1)]
    if rng.random() < 0.3:
        streams.append(Stream("cam", "L1", round(float(rng.uniform(2, 10)), 3), 1))
    src_rate = sum(s.rate for s in streams)

    op_names = ["a", "b", "c"][:n_ops]
    if shape == "chain":
        ins = {"a": ["cam"], "b": ["a"], "c": ["b"]}
        join = {}
    elif shape == "fork":
        ins = {"a": ["cam"], "b": ["a"], "c": ["a"]}
        join = {}
    else:
        ins = {"a": ["cam"], "b": ["cam"], "c": ["a", "b"]}
        join = {"c": str(rng.choice(["zip", "merge"]))}
    ratio = {(s, o): round(float(rng.choice([0.5, 1.0, 2.0])), 3) for o in op_names for s in ins[o]}
    rate: dict[str, float] = {"cam": src_rate}
    edge_rate: dict[tuple[str, str], float] = {}
    for o in op_names:
        offered = {s: rate[s] * ratio[(s, o)] for s in ins[o]}
        if join.get(o, "zip") == "merge":
            rate[o] = sum(offered.values())
            edge_rate.update({(s, o): r for s, r in offered.items()})
        else:
            rate[o] = min(offered.values())
            edge_rate.update({(s, o): rate[o] for s in ins[o]})
    variants = {o: (f"{o}0", f"{o}1") for o in op_names}
    operators = tuple(Operator(o, variants[o], rate[o], join.get(o, "zip")) for o in op_names)

    # Capabilities: one worker serves a fraction of an operator's rate; variant 1 is slower.
    capabilities: dict[tuple[str, str, str], Capability] = {}
    for o in op_names:
        for pool in pools:
            base = rate[o] * float(rng.uniform(0.6, 2.2))
            for j, v in enumerate(variants[o]):
                if rng.random() < 0.1:
                    continue  # this hardware cannot run this variant
                cap = base / (1.0 + 0.6 * j)
                memory = float(rng.choice([500.0, 1500.0, 3000.0, 6000.0])) if j == 1 else 500.0
                capabilities[(o, v, pool.hardware)] = Capability(round(cap, 4), round(1000 / cap, 3), 1, memory)

    edges = []
    for o in op_names:
        for s in ins[o]:
            sizes: dict[tuple[str, str], float] = {}
            kb = round(float(rng.uniform(20, 60)), 3) if s == "cam" else round(float(rng.uniform(1, 10)), 3)
            roll = rng.random()
            src_vars = ("default",) if s == "cam" else variants[s]
            if roll < 0.25:
                for a in src_vars:
                    for b in variants[o]:
                        sizes[(a, b)] = round(kb * float(rng.uniform(0.4, 1.5)), 3)
            elif roll < 0.5 and s != "cam":
                sizes[(variants[s][1], ANY)] = round(kb * 1.6, 3)
            elif roll < 0.7:
                sizes[(ANY, variants[o][0])] = round(kb * 0.5, 3)
            edges.append(Edge(s, o, edge_rate[(s, o)], kb, sizes))

    # Links: up the tiers; direct routing also gets L0 -> L2; sometimes a link back down.
    links: list[Link] = []
    for i in range(n_locs - 1):
        links.append(Link(f"L{i}", f"L{i + 1}", round(float(rng.uniform(0.0, 0.1)) * (i + 1), 4),
                          None, round(float(rng.uniform(1, 20)), 2)))
    if n_locs == 3 and (not transit or rng.random() < 0.5):
        links.append(Link("L0", "L2", round(float(rng.uniform(0.05, 0.3)), 4), None, 30.0))
    if rng.random() < 0.15:
        links.append(Link("L1", "L0", round(float(rng.uniform(0.0, 0.1)), 4), None, 5.0))
    if rng.random() < 0.45:
        # A bandwidth limit on one link, below what shipping all raw items would take.
        i = 0 if rng.random() < 0.7 else int(rng.integers(len(links)))
        raw = src_rate * max(e.item_kb for e in edges)
        links[i] = Link(links[i].src, links[i].dst, links[i].cost_per_gb, round(raw * float(rng.uniform(0.15, 0.7)), 3),
                        links[i].latency_ms)

    # Accuracy: per-variant factors, or a table (over all operators or the first two), or none.
    roll = rng.random()
    factors: dict[tuple[str, str], float] = {}
    tables: tuple[AccuracyTable, ...] = ()
    if roll < 0.5:
        for o in op_names:
            factors[(o, variants[o][0])] = round(float(rng.uniform(0.6, 0.9)), 4)
            factors[(o, variants[o][1])] = round(float(rng.uniform(0.85, 1.0)), 4)
    elif roll < 0.9:
        covered = op_names if rng.random() < 0.6 else op_names[:2]
        rows = {}
        for combo in itertools.product(*(variants[o] for o in covered)):
            if rng.random() < 0.15:
                continue  # a combination the table lacks
            rows[combo] = round(float(rng.uniform(0.5, 1.0)), 4)
        if not rows:
            rows[tuple(variants[o][1] for o in covered)] = 0.9
        tables = (AccuracyTable(tuple(covered), rows),)
        for o in op_names:
            if o not in covered:
                factors[(o, variants[o][0])] = round(float(rng.uniform(0.8, 0.95)), 4)
                factors[(o, variants[o][1])] = 1.0
    accuracy = Accuracy(factors=factors, tables=tables)
    target = None
    if accuracy.defined and rng.random() < 0.9:  # else no target: only a table's gaps restrict
        values = sorted({v for combo in itertools.product(*(variants[o] for o in op_names))
                         if (v := accuracy.of(dict(zip(op_names, combo)))) is not None})
        if values:
            # Midway between two achievable accuracies (never on one), or above them all, rarely.
            k = int(rng.integers(0, len(values) + (1 if rng.random() < 0.1 else 0)))
            lower = values[k - 1] if k > 0 else values[0] - 0.1
            upper = values[k] if k < len(values) else values[-1] + 0.01
            target = round((lower + upper) / 2, 6)
            if k > 0 and not lower < target < upper:
                target = (lower + upper) / 2
    accuracy = Accuracy(target=target, factors=factors, tables=tables)

    return Problem(
        name=f"tiny-{seed}",
        locations=locations,
        pools=tuple(pools),
        streams=tuple(streams),
        operators=operators,
        edges=tuple(edges),
        capabilities=capabilities,
        links=tuple(links),
        accuracy=accuracy,
        transit=transit,
        source_tier={"cam": 0},
    )

