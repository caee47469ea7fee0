"""The planning problem as the solver sees it: plain frozen data, built from specs or imported.

Rates are items/s, sizes KB per item, prices $/h, transfer $/GB (2^30 bytes). A *location* is a
place data can be (a site; for the prototype's format, a class of identical workers); a *pool* is
the workers of one hardware kind at one location; a *stream* is the items one source emits at one
location. Operators are in topological order, and every rate is fixed by the sources and the edge
ratios, so it does not depend on the variants chosen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

KB_PER_S_TO_GB_PER_H = 3600 / 1024**2
KB_PER_S_TO_MBPS = 8 * 1024 / 1e6
ANY = "*"


@dataclass(frozen=True)
class Location:
    name: str
    tier: int
    tier_name: str


@dataclass(frozen=True)
class Pool:
    name: str
    location: str
    hardware: str
    count: int
    price: float
    memory_mb: float = math.inf
    members: tuple[str, ...] = ()  # the individual workers it stands for, where they have names


@dataclass(frozen=True)
class Capability:
    """One worker of ``hardware`` running ``variant`` of an operator."""

    capacity: float  # items/s
    latency_ms: float  # per item (batch 1) or per batch (batching)
    batch: int = 1
    memory_mb: float = 0.0
    threads: int | None = None  # ONNX Runtime intra-op threads the figures were measured with


@dataclass(frozen=True)
class Operator:
    name: str
    variants: tuple[str, ...]
    rate: float  # items/s it must process in all
    join: str = "zip"  # zip | merge


@dataclass(frozen=True)
class Stream:
    source: str
    location: str
    rate: float  # items/s of all streams of this source at this location
    count: int = 1


@dataclass(frozen=True)
class Edge:
    """A workflow edge ``src -> dst``; ``src`` is a source or an operator, ``dst`` an operator."""

    src: str
    dst: str
    rate: float  # items/s it carries in all
    item_kb: float  # default KB per item
    sizes: Mapping[tuple[str, str], float] = field(default_factory=dict)  # (src variant|*, dst variant|*)

    @property
    def name(self) -> str:
        return f"{self.src}->{self.dst}"

    def size(self, src_variant: str, dst_variant: str) -> float:
        for key in ((src_variant, dst_variant), (src_variant, ANY), (ANY, dst_variant)):
            if key in self.sizes:
                return self.sizes[key]
        return self.item_kb


@dataclass(frozen=True)
class Link:
    src: str
    dst: str
    cost_per_gb: float
    bandwidth_kbps: float | None = None  # KB/s; None: unlimited
    latency_ms: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.src}->{self.dst}"


@dataclass(frozen=True)
class AccuracyTable:
    operators: tuple[str, ...]
    rows: Mapping[tuple[str, ...], float]


@dataclass(frozen=True)
class Accuracy:
    """End-to-end accuracy = product of table values and per-variant factors."""

    target: float | None = None
    factors: Mapping[tuple[str, str], float] = field(default_factory=dict)  # (operator, variant)
    tables: tuple[AccuracyTable, ...] = ()
    metric: str | None = None  # what the figures measure, as the zoo names it

    def of(self, assignment: Mapping[str, str]) -> float | None:
        """Predicted accuracy of a variant per operator; None when a table lacks the combination."""
        value = 1.0
        for table in self.tables:
            key = tuple(assignment[o] for o in table.operators)
            if key not in table.rows:
                return None
            value *= table.rows[key]
        for (op, var), factor in self.factors.items():
            if assignment.get(op) == var:
                value *= factor
        return value

    @property
    def defined(self) -> bool:
        return bool(self.tables or self.factors)


@dataclass(frozen=True)
class Problem:
    name: str
    locations: tuple[Location, ...]
    pools: tuple[Pool, ...]
    streams: tuple[Stream, ...]
    operators: tuple[Operator, ...]  # topological order
    edges: tuple[Edge, ...]
    capabilities: Mapping[tuple[str, str, str], Capability]  # (operator, variant, hardware)
    links: tuple[Link, ...]
    accuracy: Accuracy = Accuracy()
    latency_bound_ms: float | None = None
    # transit: items may cross several links (sites joined by a network). Without it, items go
    # straight from the producing location to the consuming one (the prototype's worker pairs).
    transit: bool = True
    source_tier: dict[str, int] = field(default_factory=dict)  # informational
    # (operator, variant) -> outputs that carry work per input, where not 1: a strided detector's
    # 1/stride. Operator rates above are at scale 1; what runs after a scaled variant gets less.
    output_scale: Mapping[tuple[str, str], float] = field(default_factory=dict)
    # (operator, variant) -> the exact variant it approximates (a sampled re-ID), where it does.
    approximates: Mapping[tuple[str, str], str] = field(default_factory=dict)

    # -- lookups -------------------------------------------------------------------------------
    def location(self, name: str) -> Location:
        return next(loc for loc in self.locations if loc.name == name)

    def operator(self, name: str) -> Operator:
        return next(o for o in self.operators if o.name == name)

    def pool(self, name: str) -> Pool:
        return next(p for p in self.pools if p.name == name)

    @property
    def source_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.source for s in self.streams))

    def source_rate(self, source: str) -> float:
        return sum(s.rate for s in self.streams if s.source == source)

    def rate(self, node: str) -> float:
        """Items/s a source emits or an operator processes, in all."""
        if node in self.source_names:
            return self.source_rate(node)
        return self.operator(node).rate

    def variants_of(self, node: str) -> tuple[str, ...]:
        if node in self.source_names:
            return ("default",)
        return self.operator(node).variants

    def inputs(self, op: str) -> tuple[Edge, ...]:
        return tuple(e for e in self.edges if e.dst == op)

    def outputs(self, node: str) -> tuple[Edge, ...]:
        return tuple(e for e in self.edges if e.src == node)

    def ancestors(self, op: str) -> tuple[str, ...]:
        """The operators whose outputs reach ``op``, in topological order."""
        seen: set[str] = set()
        todo = [e.src for e in self.inputs(op)]
        while todo:
            node = todo.pop()
            if node not in seen and node not in self.source_names:
                seen.add(node)
                todo.extend(e.src for e in self.inputs(node))
        return tuple(o.name for o in self.operators if o.name in seen)

    def capability(self, op: str, variant: str, hardware: str) -> Capability | None:
        return self.capabilities.get((op, variant, hardware))
