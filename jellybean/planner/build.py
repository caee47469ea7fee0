"""Stage 1: load and cross-check the YAML specs and build the solver-facing Problem."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from jellybean.errors import SpecError
from jellybean.planner import parity
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
from jellybean.spec.base import did_you_mean, load_model
from jellybean.spec.hardware import Hardware, HardwareCatalog, hardware_files, merge_catalogs, tier_rank
from jellybean.spec.infrastructure import Infrastructure
from jellybean.spec.workflow import Workflow
from jellybean.spec.zoo import Profile, Variant, Zoo

MBPS_TO_KBPS = 1e6 / 8 / 1024
# Items/s any one node of the workflow may handle, all streams together. Every field is bounded on
# its own (jellybean.spec.base); these bound what they multiply to, so the model stays finite.
MIN_NODE_RATE, MAX_NODE_RATE = 1e-9, 1e9


@dataclass(frozen=True)
class Inputs:
    """The four kinds of spec a plan is made from, validated, with where each came from."""

    workflow: Workflow
    zoo: Zoo
    infrastructure: Infrastructure
    hardware: dict[str, Hardware]
    paths: dict[str, str]


def load_hardware(infra: Infrastructure, infra_path: Path) -> dict[str, Hardware]:
    catalogs: list[tuple[str, HardwareCatalog]] = []
    for i, rel in enumerate(infra.hardware_catalog):
        path = (infra_path.parent / rel).resolve()
        if not path.exists():
            raise SpecError(
                [f"{infra_path}: hardware_catalog[{i}]: '{rel}' does not exist (looked at {path}); "
                 "give a hardware YAML file or directory relative to this file"]
            )
        for f in hardware_files(path):
            catalogs.append((str(f), load_model(HardwareCatalog, f)))
    return merge_catalogs(catalogs)


def load_inputs(workflow: Path, zoo: Path, infrastructure: Path) -> Inputs:
    problems: list[str] = []
    loaded = {}
    for key, model, path in (("workflow", Workflow, workflow), ("zoo", Zoo, zoo), ("infrastructure", Infrastructure, infrastructure)):
        try:
            loaded[key] = load_model(model, path)
        except SpecError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SpecError(problems)
    hardware = load_hardware(loaded["infrastructure"], infrastructure)
    inputs = Inputs(
        workflow=loaded["workflow"],
        zoo=loaded["zoo"],
        infrastructure=loaded["infrastructure"],
        hardware=hardware,
        paths={"workflow": str(workflow), "zoo": str(zoo), "infrastructure": str(infrastructure)},
    )
    check_references(inputs)
    return inputs


def check_references(inputs: Inputs) -> None:
    """Problems that span files: names one file uses that another must define."""
    wf, zoo, infra, hw = inputs.workflow, inputs.zoo, inputs.infrastructure, inputs.hardware
    wpath, zpath, ipath = inputs.paths["workflow"], inputs.paths["zoo"], inputs.paths["infrastructure"]
    problems: list[str] = []
    source_names = [s.name for s in wf.sources]
    for i, site in enumerate(infra.sites):
        for name in site.hardware:
            if name not in hw:
                problems.append(
                    f"{ipath}: sites[{i}].hardware.{name}: unknown hardware '{name}'{did_you_mean(name, hw)}; "
                    "define it in a file of hardware_catalog or correct the name"
                )
        for name in site.sources:
            if name not in source_names:
                problems.append(
                    f"{ipath}: sites[{i}].sources.{name}: the workflow {wpath} has no source '{name}'"
                    f"{did_you_mean(name, source_names)}; use one of: {', '.join(source_names)}"
                )
    if not any(site.sources for site in infra.sites):
        problems.append(f"{ipath}: sites: no site has streams attached; add `sources: {{{source_names[0]}: N}}` to a site")
    zoo_ops = [o.name for o in zoo.operators]
    for i, op in enumerate(wf.operators):
        if op.name not in zoo_ops:
            problems.append(
                f"{zpath}: operators: no entry for the workflow's operator '{op.name}' "
                f"(workflow {wpath} operators[{i}]){did_you_mean(op.name, zoo_ops)}; add its variants"
            )
    if zoo.accuracy_table is not None:
        for j, name in enumerate(zoo.accuracy_table.operators):
            if wf.operator(name) is None:
                problems.append(
                    f"{zpath}: accuracy_table.operators[{j}]: '{name}' is not an operator of the workflow {wpath}; "
                    "remove it from the table"
                )
    if wf.slo.accuracy is not None:
        has_factor = any(v.accuracy is not None for o in zoo.operators for v in o.variants)
        if zoo.accuracy_table is None and not has_factor:
            problems.append(
                f"{wpath}: slo.accuracy: a target is set but the zoo {zpath} gives no accuracy "
                "(no variant `accuracy` and no `accuracy_table`); add them or remove the target"
            )
        if wf.slo.accuracy <= 0 and has_factor:
            problems.append(f"{wpath}: slo.accuracy: must be > 0 when accuracies compose by product")
        table = zoo.accuracy_table
        target = wf.slo.accuracy
        if target > 1 and (table is None or not table.in_percent):
            problems.append(
                f"{wpath}: slo.accuracy: {target:g} is above 1, but the accuracies of the zoo {zpath} are fractions; "
                f"write the target as a fraction (e.g. {min(target / 100, 1):g} for {target:g} %)"
            )
        elif table is not None and table.in_percent and 0 < target <= 1:
            problems.append(
                f"{wpath}: slo.accuracy: {target:g} reads as a fraction, but the accuracy_table of the zoo {zpath} is in "
                f"percent; write the target in percent (e.g. {target * 100:g})"
            )
    problems += parity.check(wf, zoo, wpath, zpath)
    if problems:
        raise SpecError(problems)


# -- problem building -----------------------------------------------------------------------------


def _capability(variant: Variant, profile: Profile, max_batch_latency_ms: float | None) -> Capability:
    """Capacity of one worker: batch 1, or the best profiled batch whose latency fits the window."""
    capacity, latency, batch = 1000.0 / profile.latency_ms, profile.latency_ms, 1
    if max_batch_latency_ms is not None:
        for b, thr in sorted(profile.throughput.items()):
            batch_latency = 1000.0 * b / thr
            if batch_latency <= max_batch_latency_ms and thr > capacity:
                capacity, latency, batch = thr, batch_latency, b
    memory = max(variant.memory_mb, profile.peak_memory_mb or 0.0)
    return Capability(capacity=capacity, latency_ms=latency, batch=batch, memory_mb=memory, threads=profile.threads)


def _rates(wf: Workflow, source_rates: dict[str, float]) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """Items/s every node handles and every edge carries; fixed by the sources and edge ratios."""
    node_rate = dict(source_rates)
    edge_rate: dict[tuple[str, str], float] = {}
    for op in wf.topological_operators():
        offered = {inp: node_rate[inp] * wf.edge(inp, op.name).ratio for inp in op.inputs}
        if op.join == "zip":
            node_rate[op.name] = min(offered.values())
            for inp in op.inputs:
                edge_rate[(inp, op.name)] = node_rate[op.name]
        else:
            node_rate[op.name] = sum(offered.values())
            edge_rate.update({(inp, op.name): r for inp, r in offered.items()})
    return node_rate, edge_rate


def check_node_rates(wf: Workflow, node_rate: dict[str, float], wpath: str, ipath: str) -> None:
    """Refuse rates that the sources' streams and the edge ratios multiply out of any real range."""
    problems: list[str] = []
    fed = {inp for op in wf.operators for inp in op.inputs}
    for i, s in enumerate(wf.sources):
        if node_rate[s.name] == 0 and s.name in fed:
            problems.append(
                f"{ipath}: sites: no site has streams of the workflow's source '{s.name}' ({wpath} sources[{i}]); "
                f"attach some with `sources: {{{s.name}: N}}` at a site, or remove the source from the workflow"
            )
        elif node_rate[s.name] > MAX_NODE_RATE:
            problems.append(
                f"{ipath}: sites: the streams of source '{s.name}' emit {node_rate[s.name]:g} items/s in all, more "
                f"than {MAX_NODE_RATE:g}; lower their counts or rates (workflow {wpath} sources[{i}].rate)"
            )
    if problems:
        raise SpecError(problems)
    for i, op in enumerate(wf.operators):
        rate = node_rate[op.name]
        if not math.isfinite(rate) or not MIN_NODE_RATE <= rate <= MAX_NODE_RATE:
            problems.append(
                f"{wpath}: operators[{i}]: '{op.name}' would handle {rate:g} items/s (the sources' rates times the "
                f"ratios of the edges on the way), outside {MIN_NODE_RATE:g}..{MAX_NODE_RATE:g}; check those rates "
                "and edges[].ratio"
            )
    if problems:
        raise SpecError(problems)


def build_problem(inputs: Inputs) -> Problem:
    wf, zoo, infra, hardware = inputs.workflow, inputs.zoo, inputs.infrastructure, inputs.hardware
    zpath, wpath = inputs.paths["zoo"], inputs.paths["workflow"]

    locations = tuple(Location(s.name, tier_rank(s.tier), s.tier) for s in infra.sites)
    pools = tuple(
        Pool(
            name=f"{site.name}/{hw_name}",
            location=site.name,
            hardware=hw_name,
            count=at.count,
            price=hardware[hw_name].price_per_hour if at.price_per_hour is None else at.price_per_hour,
            memory_mb=hardware[hw_name].memory_mb,
        )
        for site in infra.sites
        for hw_name, at in site.hardware_at().items()
        if at.count > 0
    )

    streams = tuple(
        Stream(source=name, location=site.name, rate=at.count * (at.rate or wf.source(name).rate), count=at.count)
        for site in infra.sites
        for name, at in site.streams_at().items()
    )
    source_rates = {s.name: sum(st.rate for st in streams if st.source == s.name) for s in wf.sources}
    node_rate, edge_rate = _rates(wf, source_rates)
    check_node_rates(wf, node_rate, wpath, inputs.paths["infrastructure"])

    used_hw = {p.hardware for p in pools}
    capabilities: dict[tuple[str, str, str], Capability] = {}
    operators: list[Operator] = []
    scales: dict[tuple[str, str], float] = {}
    approximates: dict[tuple[str, str], str] = {}
    problems: list[str] = []
    for op in wf.topological_operators():
        zop = zoo.operator(op.name)
        window = op.batching.max_batch_latency_ms if op.batching else None
        # With redundancy, only the variants whose outputs a parity model can stand in for.
        variants = [v for v in zop.variants if op.redundancy is None or v.parity_for(op.redundancy.parity)]
        for v in variants:
            for hw_name, profile in v.profiles.items():
                if hw_name in used_hw:
                    capabilities[(op.name, v.name, hw_name)] = _capability(v, profile, window)
        if not any(key[0] == op.name for key in capabilities):
            profiled = sorted({h for v in variants for h in v.profiles})
            problems.append(
                f"{zpath}: operators.{op.name}: no variant has a profile for any hardware of the infrastructure "
                f"(profiled: {', '.join(profiled) or 'none'}; present: {', '.join(sorted(used_hw))}); "
                "profile it there with `jellybean zoo profile --hardware NAME`"
            )
        operators.append(Operator(op.name, tuple(v.name for v in variants), node_rate[op.name], op.join))
        scales.update({(op.name, v.name): v.output_scale for v in variants if v.output_scale != 1.0})
        approximates.update({(op.name, v.name): v.approximates for v in variants if v.approximates})

    edges: list[Edge] = []
    for op in wf.topological_operators():
        for inp in op.inputs:
            spec = wf.edge(inp, op.name)
            src = wf.source(inp)
            sizes: dict[tuple[str, str], float] = {}
            if src is not None:
                default_kb = spec.item_kb or src.item_kb
            else:
                for v in zoo.operator(inp).variants:
                    if v.output_kb is not None:
                        sizes[(v.name, ANY)] = v.output_kb
                default_kb = spec.item_kb
                missing = [v.name for v in zoo.operator(inp).variants if v.output_kb is None]
                if default_kb is None and missing:
                    problems.append(
                        f"{wpath}: edges: no item_kb for {inp} -> {op.name} and zoo variants "
                        f"{', '.join(missing)} of {inp} give no output_kb; add `item_kb` to that edge"
                    )
                    default_kb = 0.0
            edges.append(Edge(inp, op.name, edge_rate[(inp, op.name)], default_kb or 0.0, sizes))

    # Parity workers (redundancy: {parity: k}) are an operator of their own, after the one protected.
    extra = parity.rewrite(wf, zoo, node_rate, edges)
    for name, bases in extra.variants.items():
        base = parity.base_of(name)
        op = wf.operator(base)
        window = op.batching.max_batch_latency_ms if op.batching else None
        for v in bases:
            for hw_name, profile in parity.profiles_of(v, op.redundancy.parity).items():
                if hw_name in used_hw:
                    capabilities[(name, parity.parity_variant(v.name, op.redundancy.parity), hw_name)] = \
                        _capability(v, profile, window)
    operators = [o for op in operators for o in ([op, extra.operators[op.name]] if op.name in extra.operators else [op])]
    edges += extra.edges

    links: list[Link] = []
    for link in infra.links:
        bw = link.bandwidth_mbps * MBPS_TO_KBPS if link.bandwidth_mbps else None
        links.append(Link(link.from_, link.to, link.cost_per_gb, bw, link.latency_ms))
        if link.both_ways:
            links.append(Link(link.to, link.from_, link.cost_per_gb, bw, link.latency_ms))

    table = None
    factors: dict[tuple[str, str], float] = {}
    if zoo.accuracy_table is not None:
        t = zoo.accuracy_table
        table = AccuracyTable(t.operators, {row.variants: row.accuracy for row in t.rows})
    for op in wf.operators:
        if table is not None and op.name in table.operators:
            continue
        for v in zoo.operator(op.name).variants:
            if v.accuracy is not None:
                factors[(op.name, v.name)] = v.accuracy
    if problems:
        raise SpecError(problems)
    accuracy = Accuracy(target=wf.slo.accuracy, factors=factors, tables=((table,) if table else ()) + tuple(extra.tables),
                        metric=zoo.accuracy_metric)
    if accuracy.target is not None and not math.isfinite(accuracy.target):
        raise SpecError([f"{wpath}: slo.accuracy: must be a finite number"])

    return Problem(
        name=wf.name,
        locations=locations,
        pools=pools,
        streams=streams,
        operators=tuple(operators),
        edges=tuple(edges),
        capabilities=capabilities,
        links=tuple(links),
        accuracy=accuracy,
        latency_bound_ms=wf.slo.latency_ms,
        transit=True,
        output_scale=scales,
        approximates=approximates,
    )
