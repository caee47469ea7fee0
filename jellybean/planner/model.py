"""Stage 2: the mixed-integer model of a Problem, written the way OR-Tools' samples are.

Decisions: one variant per operator, integer worker counts per (pool, operator, variant), the load
each pool serves, and continuous flows of every workflow edge over the links. Objective: compute
$/h of the workers used plus network $/h of the bytes that cross links.

With ``mix=True`` several variants of an operator may run at once (Loki's path formulation, see
mix.py): shares c[p] over variant combinations replace the one-variant choice, a worker hosts one
variant (worker counts per variant), and accuracy is Σ c[p]·acc[p]. Message sizes follow the path
shares edge by edge in aggregate: the items of a size class on an edge are at most the edge's
rate times the share of the paths in that class, not tied to the locations that run each variant.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from ortools.linear_solver import linear_solver_pb2, pywraplp

from jellybean.errors import InfeasibleError
from jellybean.graphs import reachable
from jellybean.planner.mix import variant_paths
from jellybean.planner.problem import KB_PER_S_TO_GB_PER_H, Edge, Link, Problem


@dataclass(frozen=True)
class Restriction:
    """Narrows the decisions; the baselines are the optimal model under a restriction."""

    locations: frozenset[str] | None = None  # operators may run only here
    variants: tuple[tuple[str, str], ...] | None = None  # fixed (operator, variant)
    counts: tuple[tuple[str, str, int], ...] | None = None  # fixed (pool, operator, workers)

    def allows(self, location: str) -> bool:
        return self.locations is None or location in self.locations


SLACK_FAMILIES = ("capacity", "bandwidth", "accuracy", "latency")
SCIP_PARAMS = "separating/maxroundsroot = 2\nseparating/maxrounds = 1\n"


@dataclass(frozen=True)
class Elastic:
    """Penalised slack for diagnosing infeasibility, for the constraint families named."""

    families: frozenset[str] = frozenset()
    penalty: float = 1e4

    @property
    def enabled(self) -> bool:
        return bool(self.families)

    def relaxes(self, family: str) -> bool:
        return family in self.families


@dataclass
class Variables:
    z: dict[tuple[str, str], pywraplp.Variable] = field(default_factory=dict)  # (op, variant)
    workers: dict[tuple[str, str], pywraplp.Variable] = field(default_factory=dict)  # (pool, op), integer
    x: dict[tuple[str, str, str], pywraplp.Variable] = field(default_factory=dict)  # (pool, op, variant) items/s
    # (edge, route, size class); a route joins a group of senders to a group of receivers
    flow: dict[tuple[str, tuple[str, str], int], pywraplp.Variable] = field(default_factory=dict)
    merge_in: dict[tuple[str, str], pywraplp.Variable] = field(default_factory=dict)  # (edge, location)
    table_row: dict[tuple[int, tuple[str, ...]], pywraplp.Variable] = field(default_factory=dict)
    # latency bound only
    hosts: dict[tuple[str, str], pywraplp.Variable] = field(default_factory=dict)  # (pool, op)
    runs: dict[tuple[str, str], pywraplp.Variable] = field(default_factory=dict)  # (op, location)
    uses: dict[tuple[str, tuple[str, str]], pywraplp.Variable] = field(default_factory=dict)
    ready: dict[tuple[str, str], pywraplp.Variable] = field(default_factory=dict)  # (op, location) ms
    arrive: dict[tuple[str, str], pywraplp.Variable] = field(default_factory=dict)  # (edge, location) ms
    # mixed variants only
    path: dict[int, pywraplp.Variable] = field(default_factory=dict)  # share of items on model.paths[i]
    hosted: dict[tuple[str, str, str], pywraplp.Variable] = field(default_factory=dict)  # (pool, op, variant), integer
    hosts_variant: dict[tuple[str, str, str], pywraplp.Variable] = field(default_factory=dict)  # latency bound
    # elastic slack
    slack: dict[tuple[str, ...], pywraplp.Variable] = field(default_factory=dict)


def hop_ms(e: Edge, link: Link) -> float:
    """Propagation plus the time to put one item of ``e`` (its largest size) on the wire."""
    sizes = [e.item_kb, *e.sizes.values()]
    transmit = 1000.0 * max(sizes) / link.bandwidth_kbps if link.bandwidth_kbps else 0.0
    return link.latency_ms + transmit


class PlanningModel:
    """Builds the model in the constructor; ``solver`` and ``v`` are read by the solve stage."""

    def __init__(
        self,
        problem: Problem,
        restriction: Restriction = Restriction(),
        elastic: Elastic = Elastic(),
        backend: str = "HIGHS",
        reduce: bool = True,
        mix: bool = False,
    ):
        self.problem = problem
        self.restriction = restriction
        self.elastic = elastic
        self.backend = backend
        self.reduce = reduce
        self.mix = mix
        # highspy solves the model (jellybean.planner.highs); pywraplp only holds it, through SCIP.
        solver = pywraplp.Solver.CreateSolver("SCIP" if backend == "HIGHS" else backend)
        if solver is None:
            raise InfeasibleError(f"OR-Tools solver backend '{backend}' is not available in this build")
        if backend == "SCIP":
            # Root cut rounds bring little on these models and delay the first plan by seconds.
            solver.SetSolverSpecificParametersAsString(SCIP_PARAMS)
        self.solver = solver
        self.v = Variables()
        self.slack_weight: dict[tuple[str, ...], float] = {}
        self.compute_cost = 0.0
        self.network_cost = 0.0
        self._data()
        self._variables()
        self._constraints()
        self._objective()

    def size(self) -> tuple[int, int, int, int]:
        """Rows, columns, integer columns and nonzeros, as exported to the solver."""
        proto = linear_solver_pb2.MPModelProto()
        self.solver.ExportModelToProto(proto)
        return (len(proto.constraint), len(proto.variable), sum(v.is_integer for v in proto.variable),
                sum(len(c.var_index) for c in proto.constraint))

    # -- data ----------------------------------------------------------------------------------
    def _data(self) -> None:
        p = self.problem
        self.pool_by_name = {pool.name: pool for pool in p.pools}
        self.op_by_name = {op.name: op for op in p.operators}
        self.pools_at: dict[str, list] = defaultdict(list)
        for pool in p.pools:
            self.pools_at[pool.location].append(pool)
        # Arcs items may take: the links, plus staying put when items go straight to their consumer.
        self.arcs: dict[tuple[str, str], Link | None] = {(l.src, l.dst): l for l in p.links}
        if not p.transit:
            for loc in p.locations:
                self.arcs[(loc.name, loc.name)] = None
        self._routes()
        # Size classes per edge: variant pairs grouped by KB per item, so that flows are split only
        # where the variant choice changes the bytes on the wire.
        self.classes: dict[str, list[tuple[float, list[tuple[str, str]]]]] = {}
        for e in p.edges:
            by_size: dict[float, list[tuple[str, str]]] = defaultdict(list)
            for a in p.variants_of(e.src):
                for b in p.variants_of(e.dst):
                    by_size[e.size(a, b)].append((a, b))
            self.classes[e.name] = sorted(by_size.items())
        self.stream_rate: dict[tuple[str, str], float] = defaultdict(float)
        for s in p.streams:
            self.stream_rate[(s.source, s.location)] += s.rate
        self.reach_share = self._reach_share()
        self.paths: list[tuple[tuple[str, ...], float]] = []
        if self.mix:
            fixed = dict(self.restriction.variants or ())
            allowed = [[var for var in op.variants if fixed.get(op.name, var) == var] for op in p.operators]
            self.paths = variant_paths(p, allowed)

    def _routes(self) -> None:
        """Flows run between groups of locations: senders, then receivers, alike in every arc's cost.

        Without transit, bandwidth limits or a latency bound, an item's route matters only for its
        price, so senders with identical rows of arc costs (and receivers with identical columns) are
        interchangeable: any flow between two groups splits over their members, who are all linked
        at one price. On the prototype's instances this turns tens of thousands of flows into
        hundreds. Otherwise every location is its own group and routes are the arcs.
        """
        p = self.problem
        self.aggregated = (self.reduce and not p.transit and p.latency_bound_ms is None
                           and all(l.bandwidth_kbps is None for l in p.links))
        names = [loc.name for loc in p.locations]

        def price(arc: tuple[str, str]) -> float | None:
            if arc not in self.arcs:
                return None
            link = self.arcs[arc]
            return 0.0 if link is None else link.cost_per_gb

        def groups(key) -> dict[str, str]:
            first: dict[tuple, str] = {}
            return {n: first.setdefault(key(n), n) if self.aggregated else n for n in names}

        self.sender = groups(lambda a: tuple(price((a, b)) for b in names))
        self.receiver = groups(lambda b: tuple(price((a, b)) for a in names))
        self.senders: dict[str, list[str]] = defaultdict(list)
        self.receivers: dict[str, list[str]] = defaultdict(list)
        for n in names:
            self.senders[self.sender[n]].append(n)
            self.receivers[self.receiver[n]].append(n)
        self.route_price: dict[tuple[str, str], float] = {}
        for a, b in self.arcs:
            self.route_price[self.sender[a], self.receiver[b]] = price((a, b))
        self.hubs: dict[str, list[str]] = {}  # a hub joins a clique of locations free to reach each other
        if self.aggregated:
            self._free_hubs(names, price)
        self.routes_out: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self.routes_in: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for route in self.route_price:
            self.routes_out[route[0]].append(route)
            self.routes_in[route[1]].append(route)

    def _free_hubs(self, names: list[str], price) -> None:
        """Replace the free routes inside a clique (a tier, in the prototype) by a hub: n + n, not n².

        Locations that reach each other both ways at no cost are one clique; an item from a sender
        of the clique to a receiver of it goes through the clique's hub, both hops free. Exact,
        since every such pair was linked at price 0; the hub only conserves flow.
        """
        clique_of: dict[str, int] = {}
        cliques: list[list[str]] = []
        for a in names:
            if a in clique_of or price((a, a)) != 0.0:
                continue
            members = [a]
            for b in names:
                if b not in clique_of and b != a and price((b, b)) == 0.0 and all(
                        price((b, m)) == 0.0 and price((m, b)) == 0.0 for m in members):
                    members.append(b)
            for m in members:
                clique_of[m] = len(cliques)
            cliques.append(members)

        def inside(groups: dict[str, list[str]]) -> dict[str, int]:
            out = {}
            for group, members in groups.items():
                at = {clique_of.get(m) for m in members}
                if len(at) == 1 and None not in at:
                    out[group] = at.pop()
            return out

        senders, receivers = inside(self.senders), inside(self.receivers)
        for index, members in enumerate(cliques):
            s_in = [g for g, c in senders.items() if c == index]
            r_in = [g for g, c in receivers.items() if c == index]
            if len(s_in) * len(r_in) <= len(s_in) + len(r_in):
                continue  # a hub would not save routes
            hub = f"{members[0]}+free"
            self.hubs[hub] = members
            for a in s_in:
                for b in r_in:
                    self.route_price.pop((a, b), None)
                self.route_price[a, hub] = 0.0
            for b in r_in:
                self.route_price[hub, b] = 0.0

    def _reach_share(self) -> dict[tuple[str, str], float]:
        """Upper bound on the fraction of each operator's items that can be at each location.

        Items reach a location only from streams at locations with a path to it (items can hop
        through locations that process them, so paths compose in both routing modes). A location
        that can see only its own four cameras can never need more than their rate: this bound
        is what makes the relaxation pay for a whole worker there instead of a sliver of one.
        """
        p = self.problem
        succ: dict[str, set[str]] = defaultdict(set)
        for a, b in self.arcs:
            succ[a].add(b)
        reaches = {loc.name: reachable(succ, loc.name) for loc in p.locations}
        share: dict[tuple[str, str], float] = {}
        for src in p.source_names:
            total = p.source_rate(src)
            for loc in p.locations:
                upstream = sum(r for (name, at), r in self.stream_rate.items() if name == src and loc.name in reaches[at])
                share[src, loc.name] = min(1.0, upstream / total) if total > 0 else 0.0
        for op in p.operators:
            inputs = p.inputs(op.name)
            for loc in p.locations:
                if op.join == "zip":
                    share[op.name, loc.name] = min(share[e.src, loc.name] for e in inputs)
                else:
                    share[op.name, loc.name] = min(1.0, sum(e.rate * share[e.src, loc.name] for e in inputs) / op.rate)
        return share

    # -- variables -----------------------------------------------------------------------------
    def _variables(self) -> None:
        s, p, v = self.solver, self.problem, self.v
        fixed_variants = dict(self.restriction.variants or ())
        for op in p.operators:
            for var in op.variants:
                ub = 1 if fixed_variants.get(op.name, var) == var else 0
                v.z[op.name, var] = s.IntVar(0, ub, f"z[{op.name},{var}]")

        self.max_load: dict[tuple[str, str, str], float] = {}  # (pool, op, variant) items/s
        self.capacity: dict[tuple[str, str, str], float] = {}  # per worker, items/s
        fixed_counts = {(pl, op): c for pl, op, c in self.restriction.counts or ()}
        default_hi = 0 if self.restriction.counts is not None else None
        for pool in p.pools:
            if not self.restriction.allows(pool.location):
                continue
            for op in p.operators:
                counts: list[int] = []
                for var in op.variants:
                    cap = p.capability(op.name, var, pool.hardware)
                    # Device memory: a worker hosts one variant, so one that does not fit is not placed.
                    if cap is None or cap.memory_mb > pool.memory_mb:
                        continue
                    hi = fixed_counts.get((pool.name, op.name), pool.count if default_hi is None else default_hi)
                    # No pool needs more workers than serve all the load that can reach it.
                    reach = op.rate * self.reach_share[op.name, pool.location]
                    hi = min(hi, math.ceil(reach / cap.capacity - 1e-9))
                    if hi <= 0:
                        continue
                    key = (pool.name, op.name, var)
                    # A worker can never be fed more than reaches its location: that is its capacity too.
                    self.capacity[key] = min(cap.capacity, reach)
                    elastic = self.elastic.relaxes("capacity")  # the diagnosis may overfill workers
                    self.max_load[key] = reach if elastic else min(reach, hi * cap.capacity)
                    v.x[key] = s.NumVar(0, self.max_load[key], f"x[{pool.name},{op.name},{var}]")
                    counts.append(hi)
                    if self.mix:
                        # A worker hosts one variant, so with several running, counts are per variant.
                        v.hosted[key] = s.IntVar(0, hi, f"workers[{pool.name},{op.name},{var}]")
                # One variant runs workflow-wide, so worker counts need no copy per variant: the
                # capacity row below weighs each variant's load by its own throughput.
                if counts and not self.mix:
                    v.workers[pool.name, op.name] = s.IntVar(0, max(counts), f"workers[{pool.name},{op.name}]")

        for i, (path, _) in enumerate(self.paths):
            v.path[i] = s.NumVar(0, 1, f"c[{'|'.join(path)}]")

        self.edge_routes: dict[str, list[tuple[str, str]]] = {e.name: self._routes_of(e) for e in p.edges}
        for e in p.edges:
            for k in range(len(self.classes[e.name])):
                for route in self.edge_routes[e.name]:
                    v.flow[e.name, route, k] = s.NumVar(0, e.rate, f"f[{e.name},{route[0]}>{route[1]},{k}]")
            op = p.operator(e.dst)
            if op.join == "merge":
                for loc in p.locations:
                    v.merge_in[e.name, loc.name] = s.NumVar(0, e.rate, f"in[{e.name},{loc.name}]")

    def _routes_of(self, e: Edge) -> list[tuple[str, str]]:
        """The routes that can carry ``e``: from a group that can produce it to one that can take it in.

        With transit every location may relay items, so every route stays; straight from producer to
        consumer, a location whose pools cannot run the producer (or consumer) never sends (takes in)
        any: small devices that cannot host a large model carry none of its inputs.
        """
        p, v = self.problem, self.v
        if p.transit:
            return list(self.route_price)
        runs: dict[str, set[str]] = defaultdict(set)  # operator -> locations with a pool that can run it
        for pool_name, op, _ in v.x:
            runs[op].add(self.pool_by_name[pool_name].location)
        if e.src in p.source_names:
            sends = {loc for (src, loc), rate in self.stream_rate.items() if src == e.src and rate > 0}
        else:
            sends = runs[e.src]
        takes = runs[e.dst]
        can_send = {g for g, members in self.senders.items() if sends.intersection(members)}
        can_take = {g for g, members in self.receivers.items() if takes.intersection(members)}
        out = []
        for a, b in self.route_price:
            if b in self.hubs:
                ok = a in can_send
            elif a in self.hubs:
                ok = b in can_take
            else:
                ok = a in can_send and b in can_take
            if ok:
                out.append((a, b))
        return out

    # -- helpers -------------------------------------------------------------------------------
    def load_at(self, op: str, location: str):
        """Items/s of ``op`` served at ``location`` (a linear expression)."""
        return sum(
            (self.v.x[pool.name, op, var] for pool in self.pools_at[location] for var in self.op_by_name[op].variants
             if (pool.name, op, var) in self.v.x),
            start=0.0,
        )

    def produced(self, e: Edge, location: str):
        """Items/s of edge ``e`` that appear at ``location``: emitted by streams or by ``e.src``'s workers."""
        p = self.problem
        if e.src in p.source_names:
            return self.stream_rate[(e.src, location)] * e.rate / p.rate(e.src)
        return self.load_at(e.src, location) * (e.rate / p.rate(e.src))

    def consumed(self, e: Edge, location: str):
        p = self.problem
        op = p.operator(e.dst)
        if op.join == "merge":
            return self.v.merge_in[e.name, location]
        return self.load_at(e.dst, location) * (e.rate / op.rate)

    def route_flow(self, e: Edge, route: tuple[str, str]):
        flow = self.v.flow
        return sum((flow[e.name, route, k] for k in range(len(self.classes[e.name])) if (e.name, route, k) in flow),
                   start=0.0)

    def route_kb(self, route: tuple[str, str]):
        return sum(
            (size * self.v.flow[e.name, route, k]
             for e in self.problem.edges for k, (size, _) in enumerate(self.classes[e.name])
             if (e.name, route, k) in self.v.flow),
            start=0.0,
        )

    def share(self, op: str, var: str):
        """Mixed model: the share of all items whose path runs ``var`` of ``op`` (a linear expression)."""
        j = [o.name for o in self.problem.operators].index(op)
        return sum((self.v.path[i] for i, (path, _) in enumerate(self.paths) if path[j] == var), start=0.0)

    def pair_share(self, e: Edge, a: str, b: str):
        """Mixed model: the share of edge ``e``'s items produced by variant ``a`` and taken in by ``b``."""
        names = [o.name for o in self.problem.operators]
        j_dst = names.index(e.dst)
        j_src = names.index(e.src) if e.src in names else None
        return sum((self.v.path[i] for i, (path, _) in enumerate(self.paths)
                    if path[j_dst] == b and (j_src is None or path[j_src] == a)), start=0.0)

    def worker_columns(self):
        """(pool, op, variant or None, integer column) of every worker count in the model."""
        if self.mix:
            return [(pl, op, var, w) for (pl, op, var), w in self.v.hosted.items()]
        return [(pl, op, None, w) for (pl, op), w in self.v.workers.items()]

    def _slack(self, *key: str, scale: float = 1.0):
        """A violation of ``scale`` units costs one penalty: violations compare as fractions."""
        var = self.solver.NumVar(0, math.inf, "slack[" + ",".join(key) + "]")
        self.v.slack[key] = var
        self.slack_weight[key] = 1.0 / max(scale, 1e-9)
        return var

    # -- constraints ---------------------------------------------------------------------------
    def _constraints(self) -> None:
        s, p, v = self.solver, self.problem, self.v

        # Exactly one variant per operator, workflow-wide (mixed: the path shares sum to one instead).
        if self.mix:
            s.Add(sum(v.path.values(), start=0.0) == 1, "one_mix")
        for op in p.operators:
            if self.mix:
                continue
            s.Add(sum(v.z[op.name, var] for var in op.variants) == 1, f"one_variant[{op.name}]")

        # Workers host at most one operator each, within what a pool has.
        per_pool: dict[str, list] = defaultdict(list)
        for pool_name, _, _, w in self.worker_columns():
            per_pool[pool_name].append(w)
        for pool_name, used in per_pool.items():
            s.Add(sum(used) <= self.pool_by_name[pool_name].count, f"pool_count[{pool_name}]")
        # Fixed worker counts (a baseline's placement): only loads and routes are left to choose.
        for pool_name, op, count in self.restriction.counts or ():
            here = [w for pl, o, _, w in self.worker_columns() if (pl, o) == (pool_name, op)]
            s.Add(sum(here) == count if here else count == 0, f"fixed_count[{pool_name},{op}]")

        # Capacity: a pool serves at most its workers' profiled throughput, in the variant that runs.
        by_pool_op: dict[tuple[str, str], list] = defaultdict(list)
        for key, x in v.x.items():
            pool_name, op, var = key
            extra = (self._slack("capacity", pool_name, op, var, scale=self.op_by_name[op].rate)
                     if self.elastic.relaxes("capacity") else 0.0)
            by_pool_op[pool_name, op].append((x - extra) * (1.0 / self.capacity[key]))
            s.Add(x <= self.max_load[key] * v.z[op, var], f"variant_link[{pool_name},{op},{var}]")
            if self.mix:
                s.Add(x - extra <= self.capacity[key] * v.hosted[key], f"capacity[{pool_name},{op},{var}]")
        for (pool_name, op), w in v.workers.items():
            s.Add(sum(by_pool_op[pool_name, op]) <= w, f"capacity[{pool_name},{op}]")

        # One variant everywhere: the load a variant serves is all or nothing of the operator's.
        by_variant: dict[tuple[str, str], list] = defaultdict(list)
        for (pool_name, op, var), x in v.x.items():
            by_variant[op, var].append(x)
        # Mixed: a variant serves the share of the items whose paths run it, and is used when it serves any.
        for (op, var), z in v.z.items():
            served = self.share(op, var) if self.mix else z
            s.Add(sum(by_variant[op, var], start=0.0) == self.op_by_name[op].rate * served, f"variant_load[{op},{var}]")

        # Throughput: every item is processed by every operator downstream of its source.
        for op in p.operators:
            s.Add(sum(self.load_at(op.name, loc.name) for loc in p.locations) == op.rate, f"serve_all[{op.name}]")
            if op.join == "merge":
                for loc in p.locations:
                    s.Add(sum(v.merge_in[e.name, loc.name] for e in p.inputs(op.name)) == self.load_at(op.name, loc.name),
                          f"merge[{op.name},{loc.name}]")

        # Routing: per edge, what appears at a location leaves it or is consumed there.
        for e in p.edges:
            if p.transit:
                for loc in p.locations:
                    outflow = sum((self.route_flow(e, r) for r in self.routes_out[loc.name]), start=0.0)
                    inflow = sum((self.route_flow(e, r) for r in self.routes_in[loc.name]), start=0.0)
                    s.Add(self.produced(e, loc.name) + inflow == self.consumed(e, loc.name) + outflow,
                          f"conserve[{e.name},{loc.name}]")
                continue
            # Straight from producer to consumer (the staying arc is a route too), group by group.
            for group, members in self.senders.items():
                outflow = sum((self.route_flow(e, r) for r in self.routes_out[group]), start=0.0)
                s.Add(outflow == sum((self.produced(e, m) for m in members), start=0.0), f"send[{e.name},{group}]")
            for group, members in self.receivers.items():
                inflow = sum((self.route_flow(e, r) for r in self.routes_in[group]), start=0.0)
                s.Add(inflow == sum((self.consumed(e, m) for m in members), start=0.0), f"receive[{e.name},{group}]")
            for hub in self.hubs:
                for k in range(len(self.classes[e.name])):
                    into = [v.flow[e.name, r, k] for r in self.routes_in[hub] if (e.name, r, k) in v.flow]
                    out = [v.flow[e.name, r, k] for r in self.routes_out[hub] if (e.name, r, k) in v.flow]
                    if into or out:
                        s.Add(sum(into, start=0.0) == sum(out, start=0.0), f"hub[{e.name},{hub},{k}]")

        # Message sizes: flow travels in the size class of the chosen (src variant, dst variant).
        for e in p.edges:
            classes = self.classes[e.name]
            if len(classes) == 1:
                continue
            pair = {}
            for _, members in classes:
                for a, b in members:
                    pair[a, b] = (self.pair_share(e, a, b) if self.mix
                                  else s.NumVar(0, 1, f"pair[{e.name},{a},{b}]"))
            for a in p.variants_of(e.src):
                if self.mix:
                    break  # the shares come from the paths

                za = v.z[e.src, a] if (e.src, a) in v.z else 1.0
                s.Add(sum(pair[a, b] for b in p.variants_of(e.dst)) == za, f"pair_src[{e.name},{a}]")
            for b in p.variants_of(e.dst):
                if self.mix:
                    break
                s.Add(sum(pair[a, b] for a in p.variants_of(e.src)) == v.z[e.dst, b], f"pair_dst[{e.name},{b}]")
            for k, (_, members) in enumerate(classes):
                chosen = sum(pair[a, b] for a, b in members)
                if p.transit:
                    for route in self.edge_routes[e.name]:
                        s.Add(v.flow[e.name, route, k] <= e.rate * chosen, f"size_class[{e.name},{route},{k}]")
                else:
                    # Every item takes exactly one route (a hub's second hop is not counted again), so one row
                    # per class bounds them all, and more tightly than a row per route.
                    total = sum((v.flow[e.name, route, k] for route in self.edge_routes[e.name] if route[0] not in self.hubs),
                                start=0.0)
                    s.Add(total <= e.rate * chosen, f"size_class[{e.name},{k}]")

        # Link bandwidth (routes are the arcs whenever a link has a limit).
        for arc, link in self.arcs.items():
            if link is None or link.bandwidth_kbps is None:
                continue
            extra = (self._slack("bandwidth", link.src, link.dst, scale=link.bandwidth_kbps)
                     if self.elastic.relaxes("bandwidth") else 0.0)
            s.Add(self.route_kb(arc) <= link.bandwidth_kbps + extra, f"bandwidth[{link.name}]")

        self._accuracy()
        if p.latency_bound_ms is not None:
            self._latency(p.latency_bound_ms)

    def add_covers(self) -> None:
        """Whole workers cover the load: Σ_pools capacity × workers ≥ the operator's rate, per variant.

        Implied for integer plans by the rows above (the chosen variant serves all the load, a worker
        at most its capacity), but with the variant fixed it is a knapsack row over the integer
        counts alone, from which the solver derives cover and rounding cuts that the flows hide
        from it (a 112-worker prototype instance's MIP: 28 s -> 7 s). Added by the solve stage
        where it branches on variants.
        """
        if self.elastic.relaxes("capacity") or self.mix:
            return
        s, v = self.solver, self.v
        terms: dict[tuple[str, str], list] = defaultdict(list)
        for (pool_name, op, var), cap in self.capacity.items():
            terms[op, var].append(cap * v.workers[pool_name, op])
        for (op, var), z in v.z.items():
            if z.ub() > 0.5:
                s.Add(sum(terms[op, var], start=0.0) >= self.op_by_name[op].rate * z, f"cover[{op},{var}]")

    def _accuracy(self) -> None:
        """End-to-end accuracy ≥ target: product of table values and factors, linear in logs."""
        s, p, v = self.solver, self.problem, self.v
        acc = p.accuracy
        if self.mix:
            # The traffic-weighted mix over the paths; paths a table lacks were never made.
            if acc.target is not None and acc.defined:
                extra = self._slack("accuracy", scale=0.01) if self.elastic.relaxes("accuracy") else 0.0
                s.Add(sum((a * v.path[i] for i, (_, a) in enumerate(self.paths)), start=0.0) + extra >= acc.target,
                      "accuracy")
            return
        # Table rows: a row is chosen exactly when its variants are; missing combinations are barred.
        for t_index, table in enumerate(acc.tables):
            rows = dict(table.rows)
            if acc.target is not None and not acc.factors and len(acc.tables) == 1:
                rows = rows if self.elastic.relaxes("accuracy") else {k: a for k, a in rows.items() if a >= acc.target}
            for key in rows:
                v.table_row[t_index, key] = s.NumVar(0, 1, f"row[{t_index},{'|'.join(key)}]")
            s.Add(sum(v.table_row[t_index, k] for k in rows) == 1, f"one_row[{t_index}]")
            for j, op in enumerate(table.operators):
                for var in p.operator(op).variants:
                    s.Add(sum(v.table_row[t_index, k] for k in rows if k[j] == var) == v.z[op, var],
                          f"row_link[{t_index},{op},{var}]")
        if acc.target is None or not acc.defined:
            return
        simple = not acc.factors and len(acc.tables) == 1 and not self.elastic.relaxes("accuracy")
        if simple:
            return  # rows below the target were excluded above
        terms = [math.log(a) * v.table_row[t_index, key]
                 for t_index, table in enumerate(acc.tables) for key, a in table.rows.items()]
        terms += [math.log(f) * v.z[op, var] for (op, var), f in acc.factors.items() if (op, var) in v.z]
        extra = self._slack("accuracy", scale=0.01) if self.elastic.relaxes("accuracy") else 0.0
        s.Add(sum(terms) + extra >= math.log(acc.target), "accuracy")

    def _latency(self, bound: float) -> None:
        """Compute + link latency along every used route ≤ bound (longest path with big-M)."""
        s, p, v = self.solver, self.problem, self.v
        max_compute = max((c.latency_ms for c in p.capabilities.values()), default=0.0)
        max_link = max((hop_ms(e, l) for e in p.edges for l in p.links), default=0.0)
        big_m = bound + max_compute + max_link
        horizon = bound + (big_m if self.elastic.relaxes("latency") else 0.0)
        extra = self._slack("latency", scale=bound) if self.elastic.relaxes("latency") else 0.0
        for op in p.operators:
            for loc in p.locations:
                v.runs[op.name, loc.name] = s.IntVar(0, 1, f"runs[{op.name},{loc.name}]")
                v.ready[op.name, loc.name] = s.NumVar(0, horizon, f"ready[{op.name},{loc.name}]")
                s.Add(self.load_at(op.name, loc.name) <= op.rate * v.runs[op.name, loc.name],
                      f"runs_def[{op.name},{loc.name}]")
                s.Add(v.ready[op.name, loc.name] <= bound + extra, f"latency[{op.name},{loc.name}]")
            for (pool_name, o, var), w in v.hosted.items():
                if o == op.name:
                    pool = self.pool_by_name[pool_name]
                    v.hosts_variant[pool_name, o, var] = s.IntVar(0, 1, f"hosts[{pool_name},{o},{var}]")
                    s.Add(w <= pool.count * v.hosts_variant[pool_name, o, var], f"hosts_def[{pool_name},{o},{var}]")
            for pool in p.pools:
                if (pool.name, op.name) in v.workers:
                    v.hosts[pool.name, op.name] = s.IntVar(0, 1, f"hosts[{pool.name},{op.name}]")
                    s.Add(v.workers[pool.name, op.name] <= pool.count * v.hosts[pool.name, op.name],
                          f"hosts_def[{pool.name},{op.name}]")
        for e in p.edges:
            for loc in p.locations:
                v.arrive[e.name, loc.name] = s.NumVar(0, horizon, f"arrive[{e.name},{loc.name}]")
                if e.src not in p.source_names:
                    s.Add(v.arrive[e.name, loc.name] >= v.ready[e.src, loc.name] - big_m * (1 - v.runs[e.src, loc.name]),
                          f"emit[{e.name},{loc.name}]")
                # An operator's output is ready after the slowest worker hosting it there.
                for pool in self.pools_at[loc.name]:
                    if (pool.name, e.dst) not in v.hosts:
                        continue
                    compute = sum(
                        p.capability(e.dst, var, pool.hardware).latency_ms * v.z[e.dst, var]
                        for var in p.operator(e.dst).variants if (pool.name, e.dst, var) in v.x
                    )
                    s.Add(v.ready[e.dst, loc.name] >= v.arrive[e.name, loc.name] + compute
                          - big_m * (1 - v.hosts[pool.name, e.dst]), f"compute[{e.name},{pool.name}]")
                # Mixed: a worker hosting a variant takes that variant's time.
                for pool in self.pools_at[loc.name]:
                    for var in p.operator(e.dst).variants:
                        if (pool.name, e.dst, var) not in v.hosts_variant:
                            continue
                        compute = p.capability(e.dst, var, pool.hardware).latency_ms
                        s.Add(v.ready[e.dst, loc.name] >= v.arrive[e.name, loc.name] + compute
                              - big_m * (1 - v.hosts_variant[pool.name, e.dst, var]),
                              f"compute[{e.name},{pool.name},{var}]")
            for arc, link in self.arcs.items():
                if link is None:
                    continue
                use = s.IntVar(0, 1, f"uses[{e.name},{link.name}]")
                v.uses[e.name, arc] = use
                s.Add(self.route_flow(e, arc) <= e.rate * use, f"uses_def[{e.name},{link.name}]")
                s.Add(v.arrive[e.name, link.dst] >= v.arrive[e.name, link.src] + hop_ms(e, link)
                      - big_m * (1 - use), f"hop[{e.name},{link.name}]")

    # -- objective -----------------------------------------------------------------------------
    def _objective(self) -> None:
        v = self.v
        self.compute_cost = sum((self.pool_by_name[pl].price * w for pl, _, _, w in self.worker_columns()), start=0.0)
        network = []
        for route, price in self.route_price.items():
            if price > 0:
                network.append(self.route_kb(route) * (KB_PER_S_TO_GB_PER_H * price))
        self.network_cost = sum(network, start=0.0)
        objective = self.compute_cost + self.network_cost
        if self.elastic.enabled:
            violation = sum(self.slack_weight[k] * var for k, var in v.slack.items())
            objective = violation * self.elastic.penalty + objective
        self.solver.Minimize(objective)
