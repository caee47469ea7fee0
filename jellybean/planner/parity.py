"""Coded redundancy (ParM) in the plan: the parity workers of an operator as an operator of their own.

For an operator with ``redundancy: {parity: k}`` the Problem gains ``OP.parity``:
- it takes the operator's inputs at 1/k of their rate (one parity query per k items, each the size
  of one input: the encoder tiles or sums k inputs into one of the same shape);
- its outputs (one per parity query, the size of the operator's) go where the operator's go, to the
  decoder beside each consumer, at 1/k of that edge's rate;
- its variants are the parity models of the operator's variants, and a table bars every pairing but
  a variant with its own parity model (a parity model only decodes the outputs of its base);
- the operator itself keeps only the variants that have a parity model for k.
The planner then places and prices parity workers like any others: the model keeps each worker to
one operator, so a parity query never waits behind the data it protects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jellybean.errors import JellyBeanError
from jellybean.planner.problem import ANY, AccuracyTable, Edge, Operator
from jellybean.spec.workflow import Workflow
from jellybean.spec.zoo import ParityModel, Profile, Variant, Zoo, ZooOperator

SUFFIX = ".parity"


def parity_operator(op: str) -> str:
    return op + SUFFIX


def parity_variant(variant: str, k: int) -> str:
    return f"{variant}.parity{k}"


def k_of(variant: str) -> int | None:
    """k of a parity variant's name (``reid-w100.parity2`` -> 2), else None."""
    head, _, tail = variant.rpartition(".parity")
    return int(tail) if head and tail.isdigit() else None


def base_of(name: str) -> str | None:
    """The protected operator of a parity operator's name, else None."""
    return name[: -len(SUFFIX)] if name.endswith(SUFFIX) else None


def not_yet_run(wf: Workflow, what: str) -> None:
    """Redundancy the simulator does not model (parity workers, re-sent copies): refuse, saying so."""
    asked = [f"{o.name}: {field}" for o in wf.operators
             for field, value in (("redundancy", o.redundancy), ("resend", o.resend)) if value is not None]
    if asked:
        raise JellyBeanError(
            f"{what} with redundancy ({', '.join(asked)}) is not supported yet: the simulator models neither parity "
            "workers nor re-sent copies. Remove `redundancy` and `resend` from the workflow to simulate it without "
            "them; `jellybean up` runs it with them")


def check(wf: Workflow, zoo: Zoo, wpath: str, zpath: str) -> list[str]:
    """What stops the redundancy the workflow asks for, one line per problem."""
    problems = []
    names = {o.name for o in wf.operators} | {s.name for s in wf.sources}
    for i, op in enumerate(wf.operators):
        if op.redundancy is None:
            continue
        k = op.redundancy.parity
        where = f"{wpath}: operators[{i}].redundancy.parity"
        if parity_operator(op.name) in names:
            problems.append(f"{where}: the name '{parity_operator(op.name)}' is taken by another node; rename that node")
        zop = zoo.operator(op.name)
        if zop is None:
            continue  # reported by check_references
        if not any(v.parity_for(k) for v in zop.variants):
            have = sorted({m.k for v in zop.variants for m in v.parity})
            problems.append(
                f"{where}: no variant of '{op.name}' in the zoo {zpath} has a parity model for k = {k}"
                + (f" (they have k = {', '.join(map(str, have))})" if have else "")
                + "; train one with `python model_zoo/recipes/train_parity.py --k K` and list it under the "
                "variant's `parity`, or remove `redundancy`")
        if not wf.consumers(op.name):
            problems.append(f"{where}: '{op.name}' has no consumer to decode its outputs at; "
                            "redundancy protects an operator whose outputs feed another")
    return problems


def model_of(wf: Workflow, zoo: Zoo, operator: str, variant: str) -> tuple[str, ParityModel] | None:
    """(protected operator, its parity model) for a parity operator's variant, else None."""
    base = base_of(operator)
    op = wf.operator(base) if base else None
    if op is None or op.redundancy is None or zoo.operator(base) is None:
        return None
    k = op.redundancy.parity
    for v in zoo.operator(base).variants:
        if parity_variant(v.name, k) == variant and v.parity_for(k):
            return base, v.parity_for(k)
    return None


def zoo_entry(wf: Workflow, zoo: Zoo, operator: str, variant: str) -> tuple[ZooOperator, Variant] | None:
    """The zoo entry the agents run a parity operator's variant from: the parity model, run by
    the parity worker implementation, with the base variant's profiles unless it has its own."""
    found = model_of(wf, zoo, operator, variant)
    if found is None:
        return None
    base, model = found
    v = Variant(name=variant, model=model.model, sha256=model.sha256, runtime="parity-embedder",
                params={"k": model.k, "encoder": model.encoder})
    return ZooOperator(name=operator, task="parity", variants=(v,)), v


def profiles_of(variant: Variant, k: int) -> dict[str, Profile]:
    """The parity model's profiles, or its base's: the same network on an input of the same shape."""
    model = variant.parity_for(k)
    return dict(model.profiles) if model is not None and model.profiles else dict(variant.profiles)


@dataclass
class ParityParts:
    """What the rewrite adds to the Problem."""

    operators: dict[str, Operator] = field(default_factory=dict)       # after the operator protected
    edges: list[Edge] = field(default_factory=list)
    tables: list[AccuracyTable] = field(default_factory=list)
    variants: dict[str, list[Variant]] = field(default_factory=dict)   # parity operator -> its base variants


def rewrite(wf: Workflow, zoo: Zoo, node_rate: dict[str, float], edges: list[Edge]) -> ParityParts:
    """Parity operators, their edges and their pairing tables, from the edges already built."""
    parts = ParityParts()
    for op in wf.topological_operators():
        if op.redundancy is None:
            continue
        k = op.redundancy.parity
        name = parity_operator(op.name)
        bases = [v for v in zoo.operator(op.name).variants if v.parity_for(k)]
        parts.variants[name] = bases
        parts.operators[op.name] = Operator(name, tuple(parity_variant(v.name, k) for v in bases),
                                            node_rate[op.name] / k, "zip")
        for e in edges:
            if e.dst == op.name:     # the encoded queries: one input's size, 1/k of the rate
                sizes = {(a, b if b == ANY else parity_variant(b, k)): kb for (a, b), kb in e.sizes.items()}
                parts.edges.append(Edge(e.src, name, e.rate / k, e.item_kb, sizes))
            elif e.src == op.name:   # the parity outputs, to the decoder where the outputs meet
                sizes = {(parity_variant(a, k), b): kb for (a, b), kb in e.sizes.items()
                         if any(v.name == a for v in bases)}
                parts.edges.append(Edge(name, e.dst, e.rate / k, e.item_kb, sizes))
        parts.tables.append(AccuracyTable((op.name, name),
                                          {(v.name, parity_variant(v.name, k)): 1.0 for v in bases}))
    return parts
