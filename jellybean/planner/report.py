"""The figures of a plan's HTML report (`plan --report`, `explain --report`), read from the plan alone.

Sites by tier with their workers, every link the plan records with its traffic against its
bandwidth, cost per tier split into compute and network, and a side-by-side comparison with a
second plan (a baseline strategy). Drawing lives in `report_plots`, the page in `report_html`.

A link's network cost counts towards the tier of the site that sends over it (data moves up, so
it is what leaving that tier costs). Per-tier compute sums to the plan's compute cost and per-tier
network to its network cost, so the tiers add up to the plan's total.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from jellybean.spec.hardware import TIERS
from jellybean.spec.plan import LinkUse, Plan, WorkerGroup


@dataclass(frozen=True)
class Site:
    name: str
    tier: str
    rank: int
    sources: tuple[tuple[str, int], ...]  # (source, streams) attached here, e.g. ("camera", 4)
    workers: tuple[WorkerGroup, ...]


@dataclass(frozen=True)
class TierCost:
    tier: str
    rank: int
    compute: float  # $/h
    network: float  # $/h of the links leaving this tier's sites

    @property
    def total(self) -> float:
        return self.compute + self.network


def tier_names(plan: Plan) -> dict[int, str]:
    """Tier rank -> name. The plan names a tier through its workers; a tier without workers gets the
    spec's name for its rank (or tier-N for plans from the prototype's inputs)."""
    named = {plan.tiers.get(w.location, 0): w.tier for w in plan.workers}
    standard = all(name in TIERS for name in named.values())
    out = {}
    for rank in sorted(set(plan.tiers.values()) | set(named)):
        if rank in named:
            out[rank] = named[rank]
        else:
            out[rank] = TIERS[rank] if standard and rank < len(TIERS) else f"tier-{rank}"
    return out


def sites(plan: Plan) -> list[Site]:
    """Every location of the plan, lowest tier first."""
    names = tier_names(plan)
    streams: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for s in plan.streams:
        streams[s.location][s.source] += s.count
    workers: dict[str, list[WorkerGroup]] = defaultdict(list)
    for w in plan.workers:
        workers[w.location].append(w)
    locations = set(plan.tiers) | set(workers) | {e for l in plan.links for e in (l.from_, l.to)}
    out = []
    for loc in locations:
        rank = plan.tiers.get(loc, 0)
        out.append(Site(loc, names.get(rank, f"tier-{rank}"), rank, tuple(sorted(streams[loc].items())),
                        tuple(sorted(workers[loc], key=lambda w: (w.operator, w.hardware)))))
    return sorted(out, key=lambda s: (s.rank, s.name))


def links(plan: Plan) -> list[LinkUse]:
    """The plan's links, lowest tier first. The plan records a link when it carries traffic or has a
    bandwidth limit; an unlimited link that carries nothing is not in it."""
    return sorted(plan.links, key=lambda l: (plan.tiers.get(l.from_, 0), l.from_, plan.tiers.get(l.to, 0), l.to))


def tier_costs(plan: Plan) -> list[TierCost]:
    names = tier_names(plan)
    compute: dict[int, float] = defaultdict(float)
    network: dict[int, float] = defaultdict(float)
    for w in plan.workers:
        compute[plan.tiers.get(w.location, 0)] += w.cost_per_hour
    for l in plan.links:
        network[plan.tiers.get(l.from_, 0)] += l.cost_per_hour
    ranks = sorted(set(compute) | set(network) | set(names))
    return [TierCost(names.get(r, f"tier-{r}"), r, compute[r], network[r]) for r in ranks]


def headroom(plan: Plan) -> list[tuple[str, float, float, float]]:
    """(what, planned, limit, slack) for every limit the plan states, tightest first: the accuracy
    target (a floor), the latency bound, each link's bandwidth and each worker group's capacity.
    Slack is in the limit's own unit; `plan.binding` says which of them bind."""
    rows: list[tuple[str, float, float, float]] = []
    pr = plan.predicted
    if pr.accuracy is not None and pr.accuracy_target is not None:
        rows.append(("accuracy (at least)", pr.accuracy, pr.accuracy_target, pr.accuracy - pr.accuracy_target))
    if pr.latency_ms is not None and pr.latency_bound_ms is not None:
        rows.append(("latency ms (at most)", pr.latency_ms, pr.latency_bound_ms, pr.latency_bound_ms - pr.latency_ms))
    for l in links(plan):
        if l.bandwidth_mbps:
            rows.append((f"link {l.from_} → {l.to} Mbps", l.mbps, l.bandwidth_mbps, l.bandwidth_mbps - l.mbps))
    for w in plan.workers:
        rows.append((f"{w.operator}/{w.variant} on {w.count} {w.hardware} at {w.location}, items/s", w.load,
                     w.capacity, w.capacity - w.load))
    return sorted(rows, key=lambda r: (round(r[3] / r[2] if r[2] else r[3], 9), r[0]))


def sources_text(site: Site) -> str:
    return ", ".join(f"{source} ×{count}" for source, count in site.sources)


def worker_count(plan: Plan) -> int:
    return sum(w.count for w in plan.workers)


@dataclass(frozen=True)
class Comparison:
    """Two plans of one problem side by side; `difference` is b's total minus a's."""

    a: Plan
    b: Plan

    @property
    def difference(self) -> float:
        return self.b.cost.total - self.a.cost.total

    @property
    def relative(self) -> float | None:
        return self.difference / self.a.cost.total if self.a.cost.total > 0 else None

    def tiers(self) -> list[tuple[str, TierCost | None, TierCost | None]]:
        """Per tier (by rank): each plan's costs there, None where a plan has no such tier."""
        a = {t.rank: t for t in tier_costs(self.a)}
        b = {t.rank: t for t in tier_costs(self.b)}
        return [((a.get(r) or b[r]).tier, a.get(r), b.get(r)) for r in sorted(set(a) | set(b))]

    def workers_per_tier(self) -> list[tuple[str, int, int]]:
        counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for i, plan in enumerate((self.a, self.b)):
            for w in plan.workers:
                counts[plan.tiers.get(w.location, 0)][i] += w.count
        names = {**tier_names(self.b), **tier_names(self.a)}
        return [(names.get(r, f"tier-{r}"), *counts[r]) for r in sorted(counts)]

    def operators(self) -> list[str]:
        return list(dict.fromkeys([*self.a.variants, *self.b.variants]))
