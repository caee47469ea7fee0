"""The workflow: stream sources, operators, the edges between them and the service objectives."""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter
from typing import Literal

from pydantic import Field, model_validator

from jellybean.spec.base import (
    MAX_KB,
    MAX_MS,
    MAX_PERCENT,
    MAX_RATE,
    MAX_RATIO,
    StrictModel,
    spec_error,
    unknown_name,
)


class Source(StrictModel):
    """A kind of stream (e.g. a traffic camera); the infrastructure says how many sit where."""

    name: str = Field(min_length=1)
    rate: float = Field(gt=0, le=MAX_RATE, description="items per second each stream emits (fps for a camera)")
    item_kb: float = Field(gt=0, le=MAX_KB, description="size of one item in KB (a JPEG frame)")
    description: str = ""


class Batching(StrictModel):
    max_batch_latency_ms: float = Field(gt=0, le=MAX_MS, description="largest batch whose latency fits is used")


class Redundancy(StrictModel):
    """Coded redundancy (ParM): every `parity` items bound for the operator are encoded into one
    parity query, served by a parity model on workers of their own, so one missing output of
    the group can be rebuilt from the others and the parity output."""

    parity: int = Field(ge=1, le=8, description="k: items per parity query; the zoo needs a parity model for this "
                        "k. 1 is a backup model: every item also goes to a cheaper model trained to reproduce "
                        "the operator's outputs, which stands in for a late or lost one")
    decode_wait_ms: float = Field(20.0, ge=0, le=MAX_MS, description="how long after the first output of a "
                                  "group the decoder waits for the last before it rebuilds it from the others and the "
                                  "parity output (longer: fewer needless rebuilds)")
    group_wait_ms: float = Field(100.0, gt=0, le=MAX_MS, description="a producer codes a group it could not fill "
                                 "after this, with blank slots")


class Resend(StrictModel):
    """Re-sent requests (equal-resource replication): with the operator on several replicas, a
    producer sends an item again when no replica served it in time, and the first output wins."""

    after_ms: float = Field(gt=0, le=MAX_MS, description="send an item again when no replica served it after this "
                            "(above the operator's usual latency, or the copies only add load)")
    times: int = Field(1, ge=1, le=4, description="at most this many copies of one item")
    budget: float = Field(0.2, gt=0, le=4, description="copies per item sent, on average (a retry budget): when "
                          "every replica is slow, copies would only add to the load that made them late")


class Operator(StrictModel):
    name: str = Field(min_length=1)
    inputs: tuple[str, ...] = Field(min_length=1, description="sources or operators feeding this one")
    join: Literal["zip", "merge"] = Field(
        "zip",
        description="zip: one output per matched set of inputs (rate = least input rate); "
        "merge: every input item is processed (rate = sum of input rates)",
    )
    batching: Batching | None = None
    redundancy: Redundancy | None = Field(None, description="e.g. {parity: 2}: one parity query per 2 items")
    resend: Resend | None = Field(None, description="e.g. {after_ms: 60}: send an item again to another replica "
                                  "when none served it in 60 ms")
    description: str = ""


class Edge(StrictModel):
    """Properties of the stream between two nodes; edges without an entry have ratio 1."""

    from_: str = Field(alias="from")
    to: str
    ratio: float = Field(1.0, gt=0, le=MAX_RATIO, description="items on this edge per item of `from` (e.g. crops per frame)")
    item_kb: float | None = Field(None, gt=0, le=MAX_KB, description="KB per item on this edge")


class Slo(StrictModel):
    accuracy: float | None = Field(
        None, ge=0, le=MAX_PERCENT,
        description="end-to-end accuracy the plan must reach: a fraction, or percent when the zoo's accuracy "
        "table is in percent",
    )
    latency_ms: float | None = Field(None, gt=0, le=MAX_MS, description="bound on compute + link latency along any route")
    min_accuracy: float | None = Field(
        None, ge=0, le=MAX_PERCENT,
        description="the floor `deploy --adapt` never goes below when it trades accuracy for throughput under a "
        "burst (accuracy scaling); in the unit of `accuracy`",
    )

    @model_validator(mode="after")
    def _floor_below_target(self) -> "Slo":
        if self.min_accuracy is not None and self.accuracy is not None and self.min_accuracy > self.accuracy:
            raise spec_error("slo.min_accuracy", f"{self.min_accuracy:g} is above slo.accuracy {self.accuracy:g}; "
                             "the floor must be at most the target")
        return self


class Workflow(StrictModel):
    kind: Literal["workflow"]
    name: str = Field(min_length=1)
    description: str = ""
    sources: tuple[Source, ...] = Field(min_length=1)
    operators: tuple[Operator, ...] = Field(min_length=1)
    edges: tuple[Edge, ...] = ()
    slo: Slo = Slo()

    @model_validator(mode="after")
    def _graph(self) -> "Workflow":
        names: dict[str, str] = {}
        for i, s in enumerate(self.sources):
            if s.name in names:
                raise spec_error(f"sources[{i}].name", f"'{s.name}' is defined twice; give each a unique name")
            names[s.name] = "source"
        for i, o in enumerate(self.operators):
            if o.name in names:
                raise spec_error(
                    f"operators[{i}].name", f"'{o.name}' is already a {names[o.name]}; give each a unique name"
                )
            names[o.name] = "operator"
        for i, o in enumerate(self.operators):
            for j, inp in enumerate(o.inputs):
                if inp not in names:
                    raise spec_error(f"operators[{i}].inputs[{j}]", unknown_name("input", inp, list(names)))
                if inp == o.name:
                    raise spec_error(f"operators[{i}].inputs[{j}]", "an operator cannot feed itself; remove it")
        declared = {(inp, o.name) for o in self.operators for inp in o.inputs}
        seen: set[tuple[str, str]] = set()
        for i, e in enumerate(self.edges):
            if e.from_ not in names:
                raise spec_error(f"edges[{i}].from", unknown_name("source or operator", e.from_, list(names)))
            if e.to not in names or names[e.to] != "operator":
                ops = [n for n, k in names.items() if k == "operator"]
                raise spec_error(f"edges[{i}].to", unknown_name("operator", e.to, ops))
            if (e.from_, e.to) not in declared:
                raise spec_error(
                    f"edges[{i}]",
                    f"no operator lists '{e.from_}' as an input of '{e.to}'; "
                    "add it to that operator's inputs or correct the names",
                )
            if (e.from_, e.to) in seen:
                raise spec_error(f"edges[{i}]", f"edge {e.from_} -> {e.to} is described twice; keep one")
            seen.add((e.from_, e.to))
        try:
            list(TopologicalSorter({o.name: set(o.inputs) for o in self.operators}).static_order())
        except CycleError as exc:
            cycle = " -> ".join(exc.args[1])
            raise spec_error("operators", f"the workflow has a cycle ({cycle}); remove one of its inputs") from None
        return self

    # -- derived views -------------------------------------------------------------------------
    def topological_operators(self) -> list[Operator]:
        by_name = {o.name: o for o in self.operators}
        order = TopologicalSorter({o.name: set(o.inputs) for o in self.operators}).static_order()
        return [by_name[n] for n in order if n in by_name]

    def edge(self, src: str, dst: str) -> Edge:
        for e in self.edges:
            if e.from_ == src and e.to == dst:
                return e
        return Edge.model_validate({"from": src, "to": dst})

    def source(self, name: str) -> Source | None:
        return next((s for s in self.sources if s.name == name), None)

    def operator(self, name: str) -> Operator | None:
        return next((o for o in self.operators if o.name == name), None)

    def consumers(self, name: str) -> list[Operator]:
        return [o for o in self.operators if name in o.inputs]
