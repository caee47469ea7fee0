"""The plan's figure for each quantity a replay measures: a link's predicted KB/s and capacity, a
rate at the load the replay offered, the frames the sink should have delivered. The report's tables
and its plots both read these."""

from __future__ import annotations

from jellybean.replay.results import LinkMeasure, ReplayResult
from jellybean.spec.plan import Plan


def predicted_kb_per_s(link: LinkMeasure, plan: Plan | None) -> float | None:
    """The link's predicted KB/s: the driver's figure, else the plan's for the same pair."""
    if link.predicted_kb_per_s is not None or plan is None:
        return link.predicted_kb_per_s
    for use in plan.links:
        if use.from_ == link.from_ and use.to == link.to:
            return use.kb_per_s
    return None


def capacity_kb_per_s(link: LinkMeasure, plan: Plan | None) -> float | None:
    """The link's capacity in KB/s: the result's figure, else the plan's bandwidth for the pair."""
    if link.capacity_kb_per_s is not None or plan is None:
        return link.capacity_kb_per_s
    for use in plan.links:
        if use.from_ == link.from_ and use.to == link.to and use.bandwidth_mbps:
            return use.bandwidth_mbps * 1e6 / 8 / 1024
    return None


def at_load(value: float | None, result: ReplayResult, link: LinkMeasure | None = None) -> float | None:
    """A plan's figure at the load the replay offered; for a link, at the load of the streams upstream
    of it (a replay of one site's cameras loads that site's uplink fully, the others not at all)."""
    load = link.load if link is not None and link.load is not None else result.load
    return None if value is None or load is None else value * load


def expected_delivered(result: ReplayResult) -> float | None:
    return next((r.expected for r in result.rates if r.name == "frames delivered"), None)
