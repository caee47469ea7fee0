"""From a plan to what each agent runs: assignments, the sources' routes, and re-planning.

Pure functions of their inputs (the controller owns the state and the broker)."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from jellybean.agents import topics
from jellybean.agents.messages import Announce, Assignment, ParityRun, ResendRun, Routes, Task
from jellybean.agents.operators.base import lookup, runtime_for
from jellybean.errors import JellyBeanError, SpecError
from jellybean.planner import parity
from jellybean.planner.build import Inputs, build_problem, load_inputs
from jellybean.planner.strategies import make_plan
from jellybean.spec.plan import Plan
from jellybean.spec.workflow import Edge as WorkflowEdge

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deployment:
    """A plan with the specs it was made from, resolved to files the controller can read."""

    plan: Plan
    inputs: Inputs
    zoo_dir: Path

    @property
    def workflow(self) -> str:
        return self.inputs.workflow.name


def resolve_inputs(plan: Plan, plan_path: Path | None, overrides: dict[str, Path | None]) -> Inputs:
    """The workflow, zoo and infrastructure a plan names, found relative to the plan file (as
    `write_plan` records them) or, for plans written before, to the working directory;
    `overrides` win."""
    paths: dict[str, Path] = {}
    for key in ("workflow", "zoo", "infrastructure"):
        if overrides.get(key):
            paths[key] = Path(overrides[key])
            continue
        named = plan.inputs.get(key)
        candidates = [plan_path.parent / named] if named and plan_path is not None else []
        if named:
            candidates.append(Path(named))
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            where = f"'{named}' (as the plan's inputs.{key} says)" if named else "nowhere (the plan names none)"
            raise SpecError([f"{plan_path or 'plan'}: inputs.{key}: the {key} file is {where} and was not found; "
                             f"pass --{key} PATH"])
        paths[key] = found
    return load_inputs(paths["workflow"], paths["zoo"], paths["infrastructure"])


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _downstream(inputs: Inputs) -> tuple[dict[str, list[str]], dict[str, list[str]], list[str]]:
    ops = inputs.workflow.operators
    names = {o.name for o in ops}
    down: dict[str, list[str]] = {o.name: [] for o in ops}
    sources: dict[str, list[str]] = {s.name: [] for s in inputs.workflow.sources}
    for o in ops:
        for i in o.inputs:
            (down if i in names else sources).setdefault(i, []).append(o.name)
    sinks = [name for name, d in down.items() if not d]
    # Parity outputs go where the protected operator's go: to the decoders beside its consumers.
    # Producers send parity queries, not their items, to the parity operator (Assignment.parity).
    for o in ops:
        if o.redundancy is not None:
            down[parity.parity_operator(o.name)] = list(down[o.name])
    return down, sources, sinks


def parity_runs(plan: Plan, inputs: Inputs) -> dict[str, ParityRun]:
    """Protected operator -> how the agents run its redundancy, from the plan's parity variants."""
    runs = {}
    for o in inputs.workflow.operators:
        name = parity.parity_operator(o.name)
        found = parity.model_of(inputs.workflow, inputs.zoo, name, plan.variants.get(name, ""))
        if o.redundancy is not None and found is not None:
            runs[o.name] = ParityRun(operator=name, k=found[1].k, encoder=found[1].encoder,
                                     decode_wait_ms=o.redundancy.decode_wait_ms, group_wait_ms=o.redundancy.group_wait_ms)
    return runs


def resend_runs(inputs: Inputs, keyed: dict[str, str]) -> dict[str, ResendRun]:
    """Operator -> how its producers re-send (the workflow's `resend`)."""
    runs = {}
    for i, o in enumerate(inputs.workflow.operators):
        if o.resend is None:
            continue
        if keyed.get(o.name, "item") != "item":
            # A copy served by another replica would split a stream's state (a tracker's tracks).
            raise JellyBeanError(
                f"{inputs.paths.get('workflow', 'workflow')}: operators[{i}].resend: '{o.name}' keeps state per "
                f"stream ({keyed[o.name]}), so a re-sent copy cannot go to another replica; remove `resend` "
                "from it, or protect a stateless operator (a detector, re-ID)")
        runs[o.name] = ResendRun(after_ms=o.resend.after_ms, times=o.resend.times, budget=o.resend.budget)
    return runs


# What a hop between operators costs beyond the links' latency: publish, the broker, the next
# agent's receive and queue. Measured on one machine at a few ms; a margin for a loaded one.
HOP_MS = 20.0


def reserves(plan: Plan, down: dict[str, list[str]]) -> dict[str, float]:
    """Operator -> ms the operators after it need on the slowest path to a sink: their batch
    latency from the plan, the latency of the links the plan routes over and a hop each. An
    operator that used up the end-to-end deadline itself would only hand on items that die late."""
    service: dict[str, float] = defaultdict(float)
    for w in plan.workers:
        if w.count > 0:
            service[w.operator] = max(service[w.operator], w.latency_ms)
    link = {(u.from_, u.to): u.latency_ms for u in plan.links}
    hop: dict[tuple[str, str], float] = defaultdict(float)
    for r in plan.routes:
        producer, _, consumer = r.edge.partition("->")
        if r.items_per_s > 0:
            hop[producer, consumer] = max(hop[producer, consumer], link.get((r.from_, r.to), 0.0))
    out: dict[str, float] = {}

    def reserve(op: str, seen: frozenset[str]) -> float:
        if op not in out:
            out[op] = max((HOP_MS + hop[op, c] + service[c] + reserve(c, seen | {op})
                           for c in down.get(op, ()) if c not in seen), default=0.0)
        return out[op]

    for op in down:
        reserve(op, frozenset())
    return out


def source_fed(inputs: Inputs) -> set[str]:
    """The operators a source feeds directly: where the sources' traffic first arrives."""
    _, sources, _ = _downstream(inputs)
    return {op for ops in sources.values() for op in ops}


def _variant(inputs: Inputs, operator: str, variant: str):
    entry = parity.zoo_entry(inputs.workflow, inputs.zoo, operator, variant)
    if entry is not None:
        return entry
    zop = inputs.zoo.operator(operator)
    v = zop.variant(variant) if zop else None
    if v is None:
        raise JellyBeanError(f"the plan uses {operator}={variant}, which the zoo does not have; plan again")
    return zop, v


def keyed_map(plan: Plan, inputs: Inputs) -> dict[str, str]:
    keyed = {}
    for op, variant in plan.variants.items():
        zop, v = _variant(inputs, op, variant)
        keyed[op] = lookup(runtime_for(zop.task, v.runtime)).keyed
    return keyed


def routing_table(plan: Plan) -> dict[str, dict[str, dict[str, float]]]:
    """Per edge, per producing site: the share of items each consuming site should get.

    The plan's routes are per link hop (items may transit a site on the way to another), while a
    producer addresses the site that runs the consumer. So the hop flows are followed end to end:
    at every site, items are consumed there (the consumer's load) or sent on along the outgoing
    hops, in proportion to those flows (a flow decomposition with proportional mixing)."""
    place = placements(plan)
    hops: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in plan.routes:
        if r.items_per_s > 1e-9 and r.from_ != r.to:
            hops[r.edge][r.from_][r.to] = hops[r.edge][r.from_].get(r.to, 0.0) + r.items_per_s
    table: dict[str, dict[str, dict[str, float]]] = {}
    edges = {r.edge for r in plan.routes}
    for edge in edges:
        consumer = edge.split("->", 1)[-1]
        demand = place.get(consumer, {})
        out = hops.get(edge, {})
        origins = {r.from_ for r in plan.routes if r.edge == edge and r.items_per_s > 1e-9}
        table[edge] = {o: _absorb(o, demand, out) for o in sorted(origins)}
        table[edge] = {o: w for o, w in table[edge].items() if w}
    return table


def _absorb(origin: str, demand: dict[str, float], out: dict[str, dict[str, float]],
            depth: int = 0) -> dict[str, float]:
    """Where an item entering `origin` ends up: {site: probability}."""
    here = demand.get(origin, 0.0)
    onward = out.get(origin, {})
    total = here + sum(onward.values())
    if total <= 1e-12 or depth > 16:
        return {origin: 1.0} if here > 0 else {}
    result: dict[str, float] = defaultdict(float)
    if here > 0:
        result[origin] += here / total
    for nxt, flow in onward.items():
        for site, p in _absorb(nxt, demand, out, depth + 1).items():
            result[site] += flow / total * p
    return dict(result)


def placements(plan: Plan) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for w in plan.workers:
        if w.load > 1e-9:
            out[w.operator][w.location] = out[w.operator].get(w.location, 0.0) + w.load
    return dict(out)


def sites_needed(plan: Plan) -> dict[str, str]:
    """Site -> hardware of the sites that run something (the first hardware if several)."""
    need: dict[str, str] = {}
    for w in plan.workers:
        if w.count > 0:
            need.setdefault(w.location, w.hardware)
    return need


def match_agents(plan: Plan, agents: dict[str, Announce]) -> tuple[dict[str, list[str]], list[str]]:
    """Site -> the agents that serve it (each agent is one device), and the sites with none."""
    by_site: dict[str, list[str]] = defaultdict(list)
    for name, a in agents.items():
        by_site[a.site].append(name)
    chosen, missing = {}, []
    for site, hardware in sites_needed(plan).items():
        names = sorted(by_site.get(site, []))
        if not names:
            missing.append(site)
            continue
        for name in names:
            if agents[name].hardware != hardware:
                log.warning("agent %s at %s is %s, the plan expects %s", name, site, agents[name].hardware, hardware)
        chosen[site] = names
    return chosen, missing


def _site_tasks(tasks: list[Task], agents: list[str],
                previous: dict[str, set[str]] | None = None) -> dict[str, list[Task]]:
    """A site's tasks spread over its agents, one worker per device where there are enough:
    stateless operators' workers round-robin over the agents (the broker balances their items
    between them); a keyed operator (tracker, association) stays whole on one agent, since its
    state must see every item of a stream. Between agents equally loaded, one that ran the
    operator before (`previous[agent]`, its operators) is preferred: when an agent dies, its
    peers keep what they run and only its share moves, instead of tasks changing places (each
    move loads a model just when the site is short of a device)."""
    out: dict[str, list[Task]] = {a: [] for a in agents}
    if len(agents) == 1:
        out[agents[0]] = list(tasks)
        return out
    previous = previous or {}
    load = {a: 0 for a in agents}

    def least_loaded(op: str) -> str:
        return min(agents, key=lambda a: (load[a], op not in previous.get(a, ()), a))

    for task in sorted(tasks, key=lambda t: (t.keyed != "item", -t.workers, t.operator)):
        if task.keyed != "item":
            target = least_loaded(task.operator)
            out[target].append(task)
            load[target] += task.workers
            continue
        share: dict[str, int] = defaultdict(int)
        for _ in range(task.workers):
            target = least_loaded(task.operator)
            share[target] += 1
            load[target] += 1
        for agent, n in share.items():
            out[agent].append(task.model_copy(update={"workers": n}))
    return out


def direct_targets(spread: dict[str, dict[str, list[Task]]], protected: set[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Protected operator -> site -> {agent: its workers of it}, where two or more agents of the
    site run it (Assignment.direct): producers then spread each coding group over them."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for site, by_agent in spread.items():
        for op in sorted(protected):
            workers = {agent: float(sum(t.workers for t in ts if t.operator == op)) for agent, ts in by_agent.items()}
            workers = {agent: n for agent, n in workers.items() if n > 0}
            if len(workers) > 1:
                out.setdefault(op, {})[site] = workers
    return out


def build_assignments(dep: Deployment, site_agents: dict[str, list[str]], version: int, *,
                      drop_after_ms: float = 5000.0, idle_agents: list[str] = (),
                      deadline_ms: float | None = None,
                      previous: dict[str, Assignment] | None = None) -> dict[str, Assignment]:
    """Each agent's assignment; `previous` (the last ones published) keeps tasks where they ran
    when a site's agents change (_site_tasks)."""
    plan, inputs = dep.plan, dep.inputs
    down, _, sinks = _downstream(inputs)
    keyed = keyed_map(plan, inputs)
    routing, place = routing_table(plan), placements(plan)
    windows = {o.name: (o.batching.max_batch_latency_ms if o.batching else 0.0) or 0.0
               for o in inputs.workflow.operators}
    tasks: dict[str, list[Task]] = defaultdict(list)
    merged: dict[tuple[str, str, str], dict] = {}
    weights: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))  # site, op, variant
    for w in plan.workers:
        if w.count <= 0:
            continue
        key = (w.location, w.operator, w.variant)
        mix = weights[w.location][w.operator]
        mix[w.variant] = mix.get(w.variant, 0.0) + w.load
        if key in merged:  # two hardware pools of one site running the same variant: one task
            merged[key]["workers"] += w.count
            continue
        zop, v = _variant(inputs, w.operator, w.variant)
        model_path = (dep.zoo_dir / v.model) if v.model else None
        if model_path is not None and not model_path.is_file():
            raise JellyBeanError(f"{dep.zoo_dir}: variant {w.operator}={w.variant} names model '{v.model}', "
                                 "which does not exist; build the zoo again or fix the manifest")
        merged[key] = dict(operator=w.operator, variant=w.variant, runtime=runtime_for(zop.task, v.runtime),
                           keyed=keyed[w.operator], workers=w.count, batch=max(1, w.batch), threads=w.threads,
                           max_batch_latency_ms=windows.get(w.operator, 0.0) if w.batch > 1 else 0.0,
                           model=v.model, sha256=(v.sha256 or file_sha256(model_path)) if model_path else None,
                           size=model_path.stat().st_size if model_path else None, params=dict(v.params))
    for (site, _, _), fields in merged.items():
        tasks[site].append(Task(**fields))
    # Several variants of one operator at a site: items split by the load the plan gives each.
    site_mix = {site: {op: dict(v) for op, v in ops.items() if len(v) > 1} for site, ops in weights.items()}
    common = dict(version=version, plan=plan.name, workflow=dep.workflow, routing=routing, placements=place,
                  downstream=down, keyed=keyed, sinks=sinks, sink_topic=topics.sink(dep.workflow),
                  drop_after_ms=drop_after_ms, deadline_ms=deadline_ms,
                  reserve_ms=reserves(plan, down) if deadline_ms is not None else {},
                  parity=parity_runs(plan, inputs), resend=resend_runs(inputs, keyed))
    ran = {agent: {t.operator for t in a.tasks} for agent, a in (previous or {}).items()}
    spread = {site: _site_tasks(tasks.get(site, []), agents, ran) for site, agents in site_agents.items()}
    common["direct"] = direct_targets(spread, set(common["parity"]))
    out = {}
    for site, agents in site_agents.items():
        for agent, agent_tasks in spread[site].items():
            out[agent] = Assignment(agent=agent, site=site, tasks=agent_tasks, shared=len(agents) > 1,
                                    mix=site_mix.get(site, {}), **common)
    for agent in idle_agents:
        out.setdefault(agent, Assignment(agent=agent, site=agent, tasks=[], **common))
    return out


def build_routes(dep: Deployment, version: int) -> Routes:
    plan = dep.plan
    _, sources, _ = _downstream(dep.inputs)
    slots: dict[str, list[str]] = defaultdict(list)
    for s in plan.streams:
        slots[s.source].extend([s.location] * s.count)
    return Routes(version=version, plan=plan.name, workflow=dep.workflow, sources=sources,
                  stream_sites=dict(slots), routing=routing_table(plan), placements=placements(plan),
                  keyed=keyed_map(plan, dep.inputs), sink_topic=topics.sink(dep.workflow),
                  plan_doc=plan.model_dump(mode="json", by_alias=True))


def assign_cameras(routes: Routes, cameras: list[str], source: str | None = None) -> dict[str, str]:
    """Camera key -> the site it is attached to: cameras in sorted order fill the plan's stream slots."""
    source = source or next(iter(routes.stream_sites), None)
    slots = routes.stream_sites.get(source or "", [])
    if len(cameras) > len(slots):
        raise JellyBeanError(f"the scenario has {len(cameras)} cameras but the plan has {len(slots)} '{source}' "
                             f"streams; give the infrastructure more sources or replay fewer cameras")
    return {cam: slots[i] for i, cam in enumerate(sorted(cameras))}


def scale_for_load(inputs: Inputs, factors: dict[str, float]) -> Inputs:
    """The inputs with the workload the agents measure: `factors[op]` = measured / planned rate of
    every operator. Sources scale by their consumers' factor, each edge's ratio by f(to) / f(from),
    so that every operator's planned rate becomes its measured one (rates are linear in these)."""
    wf = inputs.workflow
    _, feeds, _ = _downstream(inputs)
    source_factor = {}
    for src, ops in feeds.items():
        known = [factors[o] for o in ops if o in factors]
        source_factor[src] = sum(known) / len(known) if known else 1.0
    sources = tuple(s.model_copy(update={"rate": s.rate * source_factor[s.name]}) for s in wf.sources)
    edges = {(e.from_, e.to): e for e in wf.edges}
    new_edges = []
    for o in wf.operators:
        for u in o.inputs:
            f_u = factors.get(u, source_factor.get(u, 1.0))
            f_v = factors.get(o.name, f_u)
            scale = f_v / f_u if f_u > 0 else 1.0
            edge = edges.get((u, o.name))
            if edge is None:
                if abs(scale - 1.0) < 1e-9:
                    continue
                edge = WorkflowEdge.model_validate({"from": u, "to": o.name})
            new_edges.append(edge.model_copy(update={"ratio": edge.ratio * scale}))
    workflow = wf.model_copy(update={"sources": sources, "edges": tuple(new_edges)})
    sites = []
    for site in inputs.infrastructure.sites:
        streams = {}
        for name, v in site.sources.items():
            if not isinstance(v, int) and v.rate is not None:
                v = v.model_copy(update={"rate": v.rate * source_factor.get(name, 1.0)})
            streams[name] = v
        sites.append(site.model_copy(update={"sources": streams}))
    infra = inputs.infrastructure.model_copy(update={"sites": tuple(sites)})
    return dataclasses.replace(inputs, workflow=workflow, infrastructure=infra)


def replan(dep: Deployment, lost_sites: set[str], time_limit: float = 20.0,
           load: dict[str, float] | None = None) -> Deployment:
    """The optimal plan without the workers of `lost_sites` (their links and cameras stay), for the
    measured `load` (operator -> measured / planned rate of the original plan) when given."""
    inputs = scale_for_load(dep.inputs, load) if load else dep.inputs
    problem = build_problem(inputs)
    pools = tuple(p for p in problem.pools if p.location not in lost_sites)
    if not pools:
        raise JellyBeanError("no workers are left to run anything")
    problem = dataclasses.replace(problem, pools=pools)
    plan = make_plan(problem, "optimal", time_limit=time_limit, inputs=dict(dep.plan.inputs))
    return dataclasses.replace(dep, plan=plan, inputs=inputs)
