"""The plan the planner writes and the controller deploys (plan.yaml)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator

from jellybean.spec.base import StrictModel

PLAN_VERSION = 1


class SolverInfo(StrictModel):
    status: str  # OPTIMAL | FEASIBLE | HEURISTIC
    gap: float | None = Field(None, description="relative optimality gap; 0 when proven optimal")
    seconds: float = 0.0
    backend: str = ""
    best_bound: float | None = None

    @field_validator("gap", "best_bound", mode="before")
    @classmethod
    def _unknown_is_none(cls, value: Any) -> Any:
        # Solvers report "no bound yet" as an infinite bound, hence an infinite gap: both are unknown.
        if isinstance(value, float) and math.isinf(value):
            return None
        return value


class WorkerGroup(StrictModel):
    """``count`` workers of one hardware kind at one location running one operator variant."""

    location: str
    tier: str
    pool: str
    hardware: str
    operator: str
    variant: str
    count: int
    load: float  # items/s
    capacity: float  # items/s, all ``count`` workers together
    batch: int = 1
    latency_ms: float = 0.0
    threads: int | None = None  # intra-op threads its capacity was measured with; the agent runs with them
    price_per_hour: float = 0.0  # per worker
    members: tuple[str, ...] = ()

    @property
    def cost_per_hour(self) -> float:
        return self.count * self.price_per_hour

    @property
    def utilisation(self) -> float:
        return self.load / self.capacity if self.capacity > 0 else 0.0


class Route(StrictModel):
    """Items/s of one workflow edge moving from one location to another (or staying: from == to)."""

    edge: str
    from_: str = Field(alias="from")
    to: str
    items_per_s: float
    kb_per_s: float


class LinkUse(StrictModel):
    from_: str = Field(alias="from")
    to: str
    kb_per_s: float
    bandwidth_mbps: float | None = None
    latency_ms: float = 0.0
    cost_per_gb: float = 0.0
    cost_per_hour: float = 0.0

    @property
    def mbps(self) -> float:
        return self.kb_per_s * 8 * 1024 / 1e6

    @property
    def utilisation(self) -> float | None:
        return self.mbps / self.bandwidth_mbps if self.bandwidth_mbps else None


class StreamRate(StrictModel):
    source: str
    location: str
    rate: float
    count: int = 1


class Costs(StrictModel):
    compute: float
    network: float
    total: float


class Prediction(StrictModel):
    accuracy: float | None = None
    accuracy_metric: str | None = Field(None, description="what `accuracy` measures, as the zoo names it")
    accuracy_target: float | None = None
    throughput: dict[str, float] = Field(default_factory=dict, description="items/s processed per operator")
    latency_ms: float | None = Field(None, description="worst compute + link latency along a used route")
    latency_bound_ms: float | None = None


class PathShare(StrictModel):
    """A share of the items that runs one variant per operator (a path through a mixed plan)."""

    variants: dict[str, str]
    share: float
    accuracy: float | None = None


class Mixing(StrictModel):
    """How mixed variants were weighed against the one-variant plan (`plan --mix`)."""

    chosen: bool = False
    one_variant_cost: float | None = Field(None, description="$/h of the best one-variant plan; None: there is none")
    one_variant_variants: dict[str, str] = Field(default_factory=dict)
    one_variant_accuracy: float | None = None
    paths: tuple[PathShare, ...] = ()
    reason: str = ""


class Approximation(StrictModel):
    """What the plan's approximate variants (a sampled re-ID) save against the best plan without them."""

    variants: dict[str, str] = Field(description="operator -> the approximate variant the plan runs")
    exact_cost: float | None = Field(None, description="$/h of the best plan without approximate variants; None: "
                                                       "there is none (see reason)")
    exact_variants: dict[str, str] = Field(default_factory=dict)
    exact_accuracy: float | None = None
    reason: str = ""


class Plan(StrictModel):
    kind: Literal["plan"] = "plan"
    version: int = PLAN_VERSION
    name: str
    strategy: str
    inputs: dict[str, str] = Field(default_factory=dict)
    solver: SolverInfo
    # Each operator's variant; in a mixed plan the one with the largest share of its items.
    variants: dict[str, str]
    # Mixed plans only: operator -> {variant: share of its items}, for the operators that run several.
    mix: dict[str, dict[str, float]] = Field(default_factory=dict)
    mixing: Mixing | None = None  # present when mixing was considered
    # Operators whose variants pass on less than they take (a strided detector: 0.5), where the
    # planner sized what follows for that share of the items.
    output_scale: dict[str, float] = Field(default_factory=dict)
    # Present when the plan runs approximate variants: the same inputs planned without them.
    approximation: Approximation | None = None
    tiers: dict[str, int] = Field(default_factory=dict, description="location -> tier rank")
    streams: tuple[StreamRate, ...] = ()
    workers: tuple[WorkerGroup, ...] = ()
    routes: tuple[Route, ...] = ()
    links: tuple[LinkUse, ...] = ()
    cost: Costs
    predicted: Prediction
    binding: tuple[str, ...] = ()
