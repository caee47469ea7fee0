"""An independent exact planner for the prototype's optimizer input directories, to check the package's.

It reads the directory itself (only the accuracy pickle goes through the importer's safe
``read_accuracy_profiles``; no Problem, no jellybean.planner.model) and writes a compact
mixed-integer model, solved with HiGHS through highspy's arrays, from the semantics in DESIGN.md
("The JellyBean-format importer") and the importer's docstring:

- every worker is a device that hosts at most one operator, in that operator's variant, and is
  paid whole when it hosts one; it serves at most 1000 / (latency_ms × LATENCY_OVERESTIMATE_RATIO)
  items/s, and nothing where its latency is empty;
- one variant per operator, workflow-wide: the end-to-end accuracy table's combinations that
  meet the threshold (and use only variants the operator may run) are the choices for the table's
  operators; an operator the profiles do not mention runs ``default``; one they list runs only
  the variants listed;
- an operator processes the least over its inputs of the upstream rate × the edge's ratio (1
  without a row); every edge u -> v carries v's rate, produced by u's workers in proportion to the
  items they process and taken in by v's workers in proportion to theirs;
- items go straight from the producing worker (or source) to the consuming one: free inside a
  tier, at the pair's $/GB × COMM_COST_SCALING_FACTOR (0 for a pair the csv lacks) to a higher
  tier, never to a lower tier; sources sit in tier 0; the bytes of an item are the message size
  for (u's variant, v's variant), falling back to (default, v's), (u's, default), (default, default).

It is written apart from jellybean.planner.model on purpose, so that the two do not share
mistakes: it reads the csv and JSON files itself, keeps one binary per (worker, operator) with no
grouping of identical workers, chooses variants by one binary per admissible accuracy combination,
and sends the free traffic inside a tier through a zero-cost hub per tier instead of an arc per
pair. ``solve_independent`` branches on those combinations outside the solver by default (each
combination's model bounded by its LP, cheapest first, cut off by the best plan), which proves
optimality far sooner on large fleets; ``decompose=False`` solves the single model instead, and
the tests check that both answer the same.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import highspy
import numpy as np
import yaml

from jellybean.planner.jellybean_format import read_accuracy_profiles

DEFAULT = "default"
GB_PER_H_PER_KB_PER_S = 3600 / 1024**2


# ---------------------------------------------------------------------------------------------
# Reading the directory
# ---------------------------------------------------------------------------------------------
def _rows(path: Path, width: int, required: bool = True) -> list[list[str]]:
    """The rows of a headerless csv, trailing empty fields beyond ``width`` dropped, blank lines skipped."""
    if not required and not path.exists():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        for fields in csv.reader(f):
            fields = [x.strip() for x in fields]
            if not any(fields):
                continue
            while len(fields) > width and fields[-1] == "":
                fields.pop()
            if len(fields) != width:
                raise ValueError(f"{path}: expected {width} fields, got {fields}")
            rows.append(fields)
    return rows


@dataclass(frozen=True)
class Instance:
    workers: tuple[str, ...]
    tier: dict[str, int]  # worker -> tier
    price: dict[str, float]
    sources: tuple[str, ...]
    operators: tuple[str, ...]  # topological
    edges: tuple[tuple[str, str], ...]
    rate: dict[str, float]  # node -> items/s
    variants: dict[str, tuple[str, ...]]  # node -> the variants it may run (sources: default)
    capacity: dict[tuple[str, str, str], float]  # (worker, operator, variant) -> items/s
    size: dict[tuple[str, str], dict[tuple[str, str], float]]  # edge -> (u variant, v variant) -> KB
    pair_cost: dict[tuple[str, str], float]  # (worker or source, worker) -> $/GB, scaled; upward pairs only
    table_operators: tuple[str, ...]
    combos: tuple[tuple[str, ...], ...]  # admissible rows of the accuracy table

    def upstream_tier(self, node: str) -> int:
        return 0 if node in self.sources else self.tier[node]


def read_instance(directory: Path) -> Instance:
    """The directory's data, with workers named one by one (as the prototype and the generator write them)."""
    d = Path(directory)
    if (d / "workers_numbers.csv").exists():
        raise NotImplementedError("workers_numbers.csv (workers by type) is not read here")
    config = yaml.safe_load((d / "config.yaml").read_text()) if (d / "config.yaml").exists() else None
    inputs_cfg = (config or {}).get("INPUT") or {}
    overestimate = float(inputs_cfg.get("LATENCY_OVERESTIMATE_RATIO", 1.0))
    scale = float(inputs_cfg.get("COMM_COST_SCALING_FACTOR", 1.0))

    edges = tuple((u, v) for u, v in _rows(d / "logical_graph.csv", 2))
    source_rate = {s: float(r) for s, r in _rows(d / "input_injection_rates.csv", 2)}
    ratio = {(u, v): float(r) for u, v, r in _rows(d / "throughput_normalization_ratios.csv", 3, required=False)}
    nodes = list(dict.fromkeys(n for e in edges for n in e))
    order = _topological(nodes, edges)
    rate = dict(source_rate)
    for n in order:
        if n not in source_rate:
            rate[n] = min(rate[u] * ratio.get((u, n), 1.0) for u, v in edges if v == n)
    operators = tuple(n for n in order if n not in source_rate)

    price = {w: float(p) for w, p in _rows(d / "workers_specs.csv", 2)}
    partition = json.loads((d / "workers_partition.json").read_text())
    tier = {w: t for t, names in enumerate(partition) for w in names}

    latency: dict[tuple[str, str, str], float] = {}
    profiled: dict[str, list[str]] = defaultdict(list)  # operator -> variants with rows, in file order
    for op, w, var, ms in _rows(d / "execution_profile.csv", 4):
        if var not in profiled[op]:
            profiled[op].append(var)
        if ms:  # empty: the worker cannot run it
            latency[(w, op, var)] = float(ms) * overestimate

    profiles = read_accuracy_profiles(d / "nodes_accuracy_profiles.pkl")
    e2e = profiles["end_to_end_profile"]
    table_operators = tuple(e2e.operators)
    listed = {p.op_name: tuple(p.acc_profile) for p in profiles.get("per_operator_profiles", [])}
    variants: dict[str, tuple[str, ...]] = {s: (DEFAULT,) for s in source_rate}
    for op in operators:
        if op in listed:
            variants[op] = tuple(v for v in profiled[op] if v in listed[op])
        elif op in table_operators:
            variants[op] = tuple(profiled[op])
        else:
            variants[op] = (DEFAULT,)
    requirement = json.loads((d / "accuracy_requirement.json").read_text())
    combos = tuple(
        combo for combo, acc in e2e.acc_profile.items()
        if acc >= requirement["threshold"] and all(v in variants[op] for op, v in zip(table_operators, combo))
    )
    capacity = {(w, op, var): 1000.0 / ms for (w, op, var), ms in latency.items() if var in variants[op]}

    rows_by_edge: dict[tuple[str, str], dict[tuple[str, str], float]] = defaultdict(dict)
    for u, v, a, b, kb in _rows(d / "message_sizes.csv", 5):
        rows_by_edge[(u, v)][(a, b)] = float(kb)
    size = {}
    for e in edges:
        table = rows_by_edge[e]
        size[e] = {
            (a, b): next(table[k] for k in ((a, b), (DEFAULT, b), (a, DEFAULT), (DEFAULT, DEFAULT)) if k in table)
            for a in variants[e[0]] for b in variants[e[1]]
        }

    # Only upward pairs are ever charged: inside a tier is free, downward is not allowed.
    pair_cost = {}
    for a, b, c in _rows(d / "workers_workers_link.csv", 3, required=False):
        if tier[a] < tier[b]:
            pair_cost[(a, b)] = float(c) * scale
    for s, w, c in _rows(d / "sources_workers_link.csv", 3, required=False):
        if tier[w] > 0:
            pair_cost[(s, w)] = float(c) * scale

    return Instance(
        workers=tuple(price), tier=tier, price=price, sources=tuple(source_rate), operators=operators,
        edges=edges, rate=rate, variants=variants, capacity=capacity, size=size, pair_cost=pair_cost,
        table_operators=table_operators, combos=combos,
    )


def _topological(nodes: Sequence[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    preds: dict[str, set[str]] = {n: set() for n in nodes}
    for u, v in edges:
        preds[v].add(u)
    order: list[str] = []
    while len(order) < len(nodes):
        ready = [n for n in nodes if n not in order and preds[n] <= set(order)]
        if not ready:
            raise ValueError("the logical graph has a cycle")
        order.append(ready[0])
    return order


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
class _Lp:
    """Columns and rows collected in Python, handed to HiGHS in one go."""

    def __init__(self) -> None:
        self.cost: list[float] = []
        self.lb: list[float] = []
        self.ub: list[float] = []
        self.integer: list[int] = []
        self.row_lo: list[float] = []
        self.row_hi: list[float] = []
        self.starts: list[int] = [0]
        self.index: list[int] = []
        self.value: list[float] = []

    def var(self, cost: float = 0.0, lb: float = 0.0, ub: float = math.inf, integer: bool = False) -> int:
        self.cost.append(cost)
        self.lb.append(lb)
        self.ub.append(ub)
        if integer:
            self.integer.append(len(self.cost) - 1)
        return len(self.cost) - 1

    def row(self, terms: Mapping[int, float] | Iterable[tuple[int, float]], lo: float, hi: float) -> None:
        items = terms.items() if isinstance(terms, Mapping) else terms
        merged: dict[int, float] = defaultdict(float)
        for j, a in items:
            merged[j] += a
        self.index.extend(merged)
        self.value.extend(merged.values())
        self.starts.append(len(self.index))
        self.row_lo.append(lo)
        self.row_hi.append(hi)

    def eq(self, terms, rhs: float) -> None:
        self.row(terms, rhs, rhs)

    def highs(self) -> highspy.Highs:
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        n, m = len(self.cost), len(self.row_lo)
        inf = highspy.kHighsInf
        h.addVars(n, np.array(self.lb), np.array([min(u, inf) for u in self.ub]))
        h.changeColsCost(n, np.arange(n, dtype=np.int32), np.array(self.cost))
        if self.integer:
            h.changeColsIntegrality(len(self.integer), np.array(self.integer, dtype=np.int32),
                                    np.full(len(self.integer), highspy.HighsVarType.kInteger.value, dtype=np.uint8))
        h.addRows(m, np.array([max(x, -inf) for x in self.row_lo]), np.array([min(x, inf) for x in self.row_hi]),
                  len(self.index), np.array(self.starts[:-1], dtype=np.int32), np.array(self.index, dtype=np.int32),
                  np.array(self.value))
        return h


def build(inst: Instance) -> _Lp:
    """The model of ``inst``: see the module docstring for what it means."""
    lp = _Lp()

    # Variant choice: z[op, variant] in [0, 1], integral through the combination binaries.
    z = {(n, v): lp.var(ub=1.0) for n in (*inst.sources, *inst.operators) for v in inst.variants[n]}
    for n in (*inst.sources, *inst.operators):
        lp.eq({z[n, v]: 1.0 for v in inst.variants[n]}, 1.0)
    if inst.table_operators:
        combo = [lp.var(ub=1.0, integer=True) for _ in inst.combos]
        lp.eq({c: 1.0 for c in combo}, 1.0)  # no admissible combination: infeasible, as it should be
        for j, op in enumerate(inst.table_operators):
            for v in inst.variants[op]:
                lp.eq([(z[op, v], 1.0), *((c, -1.0) for c, k in zip(combo, inst.combos) if k[j] == v)], 0.0)
    for op in inst.operators:
        if op not in inst.table_operators and len(inst.variants[op]) > 1:
            for v in inst.variants[op]:
                lp.integer.append(z[op, v])

    # Hosting: host[w, op] binary, at most one operator a worker; share[w, op, v] = host × z[op, v].
    host: dict[tuple[str, str], int] = {}
    load: dict[tuple[str, str], int] = {}
    # No worker serves more than its operator's whole rate; the tighter bound helps the relaxation.
    served = {(w, op, v): min(c, inst.rate[op]) for (w, op, v), c in inst.capacity.items()}
    enough: dict[str, list[tuple[int, float]]] = defaultdict(list)  # op -> (share, items/s it can serve)
    for w in inst.workers:
        for op in inst.operators:
            able = [v for v in inst.variants[op] if (w, op, v) in inst.capacity]
            if not able:
                continue
            host[w, op] = lp.var(cost=inst.price[w], ub=1.0, integer=True)
            load[w, op] = lp.var(ub=inst.rate[op])
            share = {v: lp.var(ub=1.0) for v in able}
            for v in able:
                lp.row([(share[v], 1.0), (z[op, v], -1.0)], -math.inf, 0.0)
                enough[op].append((share[v], served[w, op, v]))
            lp.eq([*((share[v], 1.0) for v in able), (host[w, op], -1.0)], 0.0)
            lp.row([(load[w, op], 1.0), *((share[v], -served[w, op, v]) for v in able)], -math.inf, 0.0)
        hosted = [(host[w, op], 1.0) for op in inst.operators if (w, op) in host]
        if hosted:
            lp.row(hosted, -math.inf, 1.0)
    for op in inst.operators:
        lp.eq([(load[w, o], 1.0) for (w, o) in load if o == op], inst.rate[op])
        # Implied by the rows above, but as one knapsack row it gives the solver its cover cuts.
        lp.row(enough[op], inst.rate[op], math.inf)

    for e in inst.edges:
        _edge_flows(lp, inst, e, z, load)
    return lp


def _edge_flows(lp: _Lp, inst: Instance, e: tuple[str, str], z, load) -> None:
    """Items of ``e`` from every producer to every consumer, and what their bytes cost."""
    u, v = e
    producers = [u] if u in inst.sources else [w for w in inst.workers if (w, u) in load]
    consumers = [w for w in inst.workers if (w, v) in load]
    rate_e = inst.rate[v]

    # Size classes: the (u variant, v variant) pairs grouped by KB per item. pair[a, b] = z[u,a] z[v,b]
    # for integral z through the transportation constraints; cls[k] is whether class k is the one in use.
    by_size: dict[float, list[tuple[str, str]]] = defaultdict(list)
    for ab, kb in inst.size[e].items():
        by_size[kb].append(ab)
    sizes = sorted(by_size)
    cls: list[int | None] = [None]
    if len(sizes) > 1:
        pair = {ab: lp.var(ub=1.0) for ab in inst.size[e]}
        for a in inst.variants[u]:
            lp.eq([*((pair[a, b], 1.0) for b in inst.variants[v]), (z[u, a], -1.0)], 0.0)
        for b in inst.variants[v]:
            lp.eq([*((pair[a, b], 1.0) for a in inst.variants[u]), (z[v, b], -1.0)], 0.0)
        cls = [lp.var(ub=1.0) for _ in sizes]
        for k, kb in enumerate(sizes):
            lp.eq([(cls[k], 1.0), *((pair[ab], -1.0) for ab in by_size[kb])], 0.0)

    out: dict[str, list[int]] = defaultdict(list)  # producer -> its flow columns
    into: dict[str, list[int]] = defaultdict(list)  # consumer -> its flow columns
    hub_in: dict[int, list[int]] = defaultdict(list)
    hub_out: dict[int, list[int]] = defaultdict(list)
    direct_by_class: dict[int, list[int]] = defaultdict(list)
    consumer_tiers = {inst.tier[q] for q in consumers}
    producer_tiers = {inst.upstream_tier(p) for p in producers}
    # Inside a tier: producer -> the tier's hub -> consumer, free.
    for p in producers:
        t = inst.upstream_tier(p)
        if t in consumer_tiers:
            f = lp.var(ub=rate_e)
            out[p].append(f)
            hub_in[t].append(f)
    for q in consumers:
        t = inst.tier[q]
        if t in producer_tiers:
            f = lp.var(ub=rate_e)
            into[q].append(f)
            hub_out[t].append(f)
    for t in hub_in:
        lp.eq([*((f, 1.0) for f in hub_in[t]), *((f, -1.0) for f in hub_out[t])], 0.0)
    # Up a tier: straight from producer to consumer, one column per size class.
    for p in producers:
        tp = inst.upstream_tier(p)
        for q in consumers:
            if inst.tier[q] <= tp:
                continue
            per_gb = inst.pair_cost.get((p, q), 0.0)
            for k, kb in enumerate(sizes):
                f = lp.var(cost=per_gb * kb * GB_PER_H_PER_KB_PER_S, ub=rate_e)
                out[p].append(f)
                into[q].append(f)
                direct_by_class[k].append(f)
    # Only the size class in use carries items up a tier (one class: nothing to choose).
    if len(sizes) > 1:
        for k in range(len(sizes)):
            lp.row([*((f, 1.0) for f in direct_by_class[k]), (cls[k], -rate_e)], -math.inf, 0.0)

    for p in producers:
        if u in inst.sources:
            lp.eq([(f, 1.0) for f in out[p]], rate_e)
        else:
            # A worker emits rate(v) / rate(u) items on this edge per item it processes.
            lp.eq([*((f, 1.0) for f in out[p]), (load[p, u], -rate_e / inst.rate[u])], 0.0)
    for q in consumers:
        lp.eq([*((f, 1.0) for f in into[q]), (load[q, v], -rate_e / inst.rate[v])], 0.0)


# ---------------------------------------------------------------------------------------------
# Solving
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Result:
    cost: float | None  # $/h of the best plan found; None when there is none
    bound: float | None  # a proven lower bound on the optimum; None when nothing is known
    status: str  # "Optimal", "Infeasible" or "Time limit reached"
    seconds: float  # reading, building and solving
    columns: int  # size of the single model (every combination in it)
    integers: int
    rows: int
    nonzeros: int
    combinations: int  # admissible variant combinations
    mips: int  # MIPs solved (1 for the single model)

    @property
    def optimal(self) -> bool:
        return self.status == "Optimal"


_TIGHT = {"mip_rel_gap": 1e-9, "mip_abs_gap": 1e-9}  # so that two exact solvers agree to 1e-6 relative
_EPS = 1e-9


def _run(lp: _Lp, options: Mapping[str, object]) -> tuple[str, float | None, float | None]:
    """HiGHS's status, the best objective (None without a plan) and its dual bound."""
    h = lp.highs()
    for key, value in {**_TIGHT, **options}.items():
        h.setOptionValue(key, value)
    h.run()
    status = h.modelStatusToString(h.getModelStatus())
    info = h.getInfo()
    has_plan = info.primal_solution_status == 2  # kSolutionStatusFeasible
    cost = info.objective_function_value if has_plan else None
    bound = info.mip_dual_bound if math.isfinite(info.mip_dual_bound) else None
    if options.get("solve_relaxation"):
        bound = cost if status == "Optimal" else None
    return status, cost, bound


def _remaining(deadline: float | None) -> dict[str, float]:
    if deadline is None:
        return {}
    return {"time_limit": max(deadline - time.perf_counter(), 0.01)}


def solve_independent(
    directory: Path, time_limit: float | None = None, threads: int | None = None, decompose: bool = True
) -> Result:
    """The least $/h of the prototype directory by the model above.

    With ``decompose`` (and several admissible combinations) the variants are branched on outside
    the solver: every combination's model with its variants fixed is bounded by its LP, and the
    MIPs are solved cheapest bound first with the best plan as a cutoff, until the next bound is no
    better. The single model blends variants in its relaxation and proves optimality slowly on
    large fleets; the decomposition's answer is the same, which the tests also check.
    """
    start = time.perf_counter()
    deadline = None if time_limit is None else start + time_limit
    options: dict[str, object] = {} if threads is None else {"threads": threads}
    inst = read_instance(directory)
    full = build(inst)
    size = dict(columns=len(full.cost), integers=len(full.integer), rows=len(full.row_lo), nonzeros=len(full.index),
                combinations=len(inst.combos))
    if not decompose or len(inst.combos) <= 1:
        status, cost, bound = _run(full, {**options, **_remaining(deadline)})
        if status == "Infeasible":
            cost = bound = None
        return Result(cost, bound, status, time.perf_counter() - start, mips=1, **size)

    fixed = [build(replace(inst, combos=(combo,))) for combo in inst.combos]
    relaxed = []
    for lp in fixed:
        status, value, _ = _run(lp, {**options, **_remaining(deadline), "solve_relaxation": True})
        relaxed.append(value if status == "Optimal" else (math.inf if status == "Infeasible" else -math.inf))
    order = sorted(range(len(fixed)), key=lambda k: relaxed[k])
    best: float | None = None
    open_bounds: list[float] = []  # combinations not proven no better than the best plan
    mips = 0
    for k in order:
        if relaxed[k] == math.inf or (best is not None and relaxed[k] >= best - _EPS * max(1.0, abs(best))):
            continue  # infeasible, or its relaxation already costs as much as the best plan
        if deadline is not None and time.perf_counter() >= deadline:
            open_bounds.append(relaxed[k])
            continue
        cutoff = {} if best is None else {"objective_bound": best}
        status, cost, bound = _run(fixed[k], {**options, **_remaining(deadline), **cutoff})
        mips += 1
        if cost is not None and (best is None or cost < best):
            best = cost
        # Infeasible under a cutoff: nothing cheaper than the best plan. Otherwise it stopped early,
        # and what it proved is its bound.
        if status not in ("Optimal", "Infeasible", "Objective bound"):
            open_bounds.append(bound if bound is not None else relaxed[k])
    seconds = time.perf_counter() - start
    if best is None and not open_bounds:
        return Result(None, None, "Infeasible", seconds, mips=mips, **size)
    lower = min([*open_bounds, *([best] if best is not None else [])])
    proven = best is not None and lower >= best - _EPS * max(1.0, abs(best))
    status = "Optimal" if proven else "Time limit reached"
    bound = best if proven else (lower if math.isfinite(lower) else None)
    return Result(best, bound, status, seconds, mips=mips, **size)
