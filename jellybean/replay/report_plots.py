"""The replay report's plots (matplotlib on the Agg canvas, no pyplot state): each writes one PNG
and says whether it had data to draw."""

from __future__ import annotations

import math
from pathlib import Path

from jellybean.replay.compare import at_load, capacity_kb_per_s, expected_delivered, predicted_kb_per_s
from jellybean.replay.results import ReplayResult
from jellybean.spec.plan import Plan


_REPLAN_COLOUR = "#7b1fa2"


def _figure(width: float, height: float):
    from matplotlib.figure import Figure   # the Agg canvas, no pyplot state

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _mark_replans(ax, result: ReplayResult) -> None:
    for k, r in enumerate(result.replans):
        ax.axvline(r.t, color=_REPLAN_COLOUR, linestyle=":", linewidth=1.5,
                   label="re-plan" if k == 0 else None)
        ax.annotate(f"plan v{r.version}", (r.t, 1), xycoords=("data", "axes fraction"), xytext=(3, -3),
                    textcoords="offset points", fontsize=7, color=_REPLAN_COLOUR, rotation=90, ha="left", va="top")


def plot_latency(result: ReplayResult, path: Path) -> bool:
    values = sorted(v for v in result.latency_ms if math.isfinite(v))
    if not values:
        return False
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    n = len(values)
    ax.step(values, [(i + 1) / n for i in range(n)], where="post", color="#1f77b4", label="measured")
    pct = result.latency_percentiles()
    for key, colour in (("p50", "#2ca02c"), ("p95", "#ff7f0e"), ("p99", "#d62728")):
        ax.axvline(pct[key], color=colour, linestyle="--", linewidth=1, label=f"{key} {pct[key]:.1f} ms")
    if result.latency_predicted_ms is not None:
        ax.axvline(result.latency_predicted_ms, color="#555555", linestyle="-.", linewidth=1.5,
                   label=f"plan {result.latency_predicted_ms:.1f} ms")
    if result.latency_slo_ms is not None:
        within = sum(1 for v in values if v <= result.latency_slo_ms) / n
        ax.axvline(result.latency_slo_ms, color="black", linewidth=2,
                   label=f"SLO {result.latency_slo_ms:g} ms ({100 * within:.1f} % within)")
    ax.set_xlabel("end-to-end latency (ms)")
    ax.set_ylabel("fraction of items")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path)
    return True


def plot_stages(result: ReplayResult, path: Path) -> bool:
    """Top: an item's mean latency as a stack of its segments, coloured as the rows below. Bottom:
    a box per segment (box p25-p75, line p50, whiskers p5-p95, dot p99), the plan's figure as a
    black diamond."""
    segs = result.segments
    if not segs:
        return False
    from matplotlib import colormaps

    labels = [f"{s.name}  ({s.sites})" for s in segs]
    cmap = colormaps["tab20"]
    colours = [cmap(i % 20) for i in range(len(segs))]
    fig = _figure(8.8, 1.6 + 0.42 * len(segs) + 1.2)
    top, bottom = fig.subplots(2, 1, height_ratios=[0.9, max(2.0, 0.42 * len(segs))])
    delivered = max(1, sum(1 for v in result.latency_ms if math.isfinite(v)))
    left = 0.0
    for seg, colour in zip(segs, colours):
        # Weighted by the share of items that took the segment: the stack is the mean end to end.
        width = seg.ms.mean * seg.ms.n / delivered
        top.barh(0, width, left=left, color=colour, edgecolor="white", hatch="" if seg.kind == "stage" else "..")
        if width > 0.014 * (len(seg.name) + 2) * max(1e-9, sum(s.ms.mean * s.ms.n for s in segs) / delivered):
            top.text(left + width / 2, 0, seg.name, ha="center", va="center", fontsize=7)
        left += width
    top.set_yticks([0], ["mean item"])
    top.set_xlabel(f"ms, mean end to end {left:.1f} (stages solid, hops dotted; colours as below)", fontsize=8)
    top.set_xlim(0, left * 1.02 or 1)
    top.set_title("latency by stage and network hop", fontsize=10)
    stats = [{"label": label, "med": s.ms.p50, "q1": s.ms.p25, "q3": s.ms.p75, "whislo": s.ms.p5,
              "whishi": s.ms.p95, "fliers": [s.ms.p99]} for s, label in zip(segs, labels)]
    boxes = bottom.bxp(stats, orientation="horizontal", patch_artist=True, widths=0.6,
                       flierprops={"marker": ".", "markersize": 5}, medianprops={"color": "black"})
    for patch, colour in zip(boxes["boxes"], colours):
        patch.set_facecolor(colour)
    planned = [(s.predicted_ms, y) for y, s in enumerate(segs, start=1) if s.predicted_ms is not None]
    if planned:
        bottom.plot([x for x, _ in planned], [y for _, y in planned], linestyle="none", marker="D", color="black",
                    markersize=5, label="plan", clip_on=False)
        bottom.legend(loc="upper right", fontsize=8)
    bottom.invert_yaxis()
    bottom.set_xlabel("ms per item (box p25-p75, line p50, whiskers p5-p95, dot p99)")
    if max(s.ms.p99 for s in segs) > 20 * max(0.5, min(s.ms.p50 for s in segs)):
        bottom.set_xscale("symlog", linthresh=1.0)
    bottom.set_xlim(left=0)
    bottom.grid(axis="x", alpha=0.3)
    fig.savefig(path)
    return True


def plot_links(result: ReplayResult, path: Path, plan: Plan | None) -> bool:
    if not result.links:
        return False
    labels = [f"{link.from_} → {link.to}" for link in result.links]
    measured = [link.kb_per_s for link in result.links]
    predicted = [predicted_kb_per_s(link, plan) for link in result.links]
    if result.load is not None:
        predicted = [at_load(p, result, link) for p, link in zip(predicted, result.links)]
    capacity = [capacity_kb_per_s(link, plan) for link in result.links]
    wire = [link.wire_kb_per_s for link in result.links]
    wired = any(w is not None for w in wire)
    fig = _figure(6.8, max(2.4, (1.0 if wired else 0.8) * len(labels) + 1.2))
    ax = fig.add_subplot()
    ys = range(len(labels))
    h = 0.27 if wired else 0.4
    ax.barh([y - h / (1 if wired else 2) for y in ys], measured, height=h, label="measured (items' bytes)",
            color="#1f77b4")
    if wired:
        ax.barh(list(ys), [w or 0 for w in wire], height=h, label="on the wire (all traffic)", color="#2e7d32")
    ax.barh([y + h / (1 if wired else 2) for y in ys], [p or 0 for p in predicted], height=h, color="#bbbbbb",
            label="plan" if result.load is None else "plan at the load replayed upstream of the link",
            hatch="//", edgecolor="#777777")
    top = max([*measured, *(w or 0 for w in wire), *(p or 0 for p in predicted), 1e-9]) * 1.25
    shown = False
    for y, cap in zip(ys, capacity):
        if cap is not None and cap <= top * 1.5:
            top = max(top, cap * 1.1)
            ax.plot([cap, cap], [y - 0.45, y + 0.45], color="#c62828", linewidth=2.5,
                    label=None if shown else "capacity")
            shown = True
    labels = [label if cap is None else f"{label}\ncapacity {cap:,.0f} KB/s" for label, cap in zip(labels, capacity)]
    ax.set_xlim(0, top)
    ax.set_yticks(list(ys), labels)
    ax.invert_yaxis()
    ax.set_xlabel("KB/s (per second of recorded video)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path)
    return True


def _mark_outages(ax, result: ReplayResult) -> None:
    for k, o in enumerate(result.outages):
        end = o.up_at if o.up_at is not None else ax.get_xlim()[1]
        ax.axvspan(o.down_at, end, color="#c62828", alpha=0.12, label="link down" if k == 0 else None)


def plot_links_over_time(result: ReplayResult, path: Path) -> bool:
    """Wire KB/s per link and direction over the run (the directions that carried more than
    control traffic), with the spans a link was down shaded."""
    if not result.link_timeline:
        return False
    series: dict[str, list[tuple[float, int]]] = {}
    for x in result.link_timeline:
        series.setdefault(f"{x.from_} → {x.to}", []).append((x.t, x.bytes_forward))
        series.setdefault(f"{x.to} → {x.from_}", []).append((x.t, x.bytes_backward))
    rates = {}
    for name, points in series.items():
        points.sort()
        rates[name] = [(t1, (b1 - b0) / 1024 / (t1 - t0)) for (t0, b0), (t1, b1) in zip(points, points[1:]) if t1 > t0]
    peak = max((r for pts in rates.values() for _, r in pts), default=0.0)
    shown = {name: pts for name, pts in rates.items() if pts and max(r for _, r in pts) >= 0.05 * peak}
    fig = _figure(6.8, 3.2)
    ax = fig.add_subplot()
    for name, pts in sorted(shown.items()):
        ax.plot([t for t, _ in pts], [r for _, r in pts], label=name, linewidth=1.4)
    _mark_outages(ax, result)
    _mark_replans(ax, result)
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("KB/s on the wire")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=7)
    fig.savefig(path)
    return True


def plot_plans_over_time(result: ReplayResult, path: Path) -> bool:
    """$/h and predicted accuracy of the plan in effect, as steps over the run (only when the plan
    changed or a load trace shaped the run: otherwise two flat lines)."""
    if not result.plans or not (result.replans or result.trace):
        return False
    end = max([result.seconds, *(p.t for p in result.plans)])
    ts = [p.t for p in result.plans] + [end]
    fig = _figure(6.4, 3.0)
    ax = fig.add_subplot()
    costs = [p.cost_per_hour for p in result.plans]
    if all(c is not None for c in costs):
        ax.step(ts, costs + costs[-1:], where="post", color="#6a1b9a", label="$/h")
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("plan $/h")
    ax.set_ylim(bottom=0)
    accuracies = [p.accuracy for p in result.plans]
    if all(a is not None for a in accuracies):
        twin = ax.twinx()
        twin.step(ts, accuracies + accuracies[-1:], where="post", color="#2e7d32", linestyle="--",
                  label="predicted accuracy")
        twin.set_ylabel("predicted accuracy (zoo product)")
        twin.set_ylim(0, 1)
        twin.legend(loc="lower right", fontsize=8)
    _mark_replans(ax, result)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.savefig(path)
    return True


def plot_throughput(result: ReplayResult, path: Path) -> bool:
    if not result.throughput:
        return False
    ts = [t for t, _ in result.throughput]
    rates = [r for _, r in result.throughput]
    fig = _figure(6.4, 3.0)
    ax = fig.add_subplot()
    ax.plot(ts, rates, marker="." if len(ts) < 60 else None, color="#1f77b4", label="measured")
    if result.trace is not None and result.offered:
        ax.plot([t for t, _ in result.offered], [r for _, r in result.offered], color="#ef6c00", linewidth=1.2,
                label="frames offered/s (load trace)")
    expected = expected_delivered(result)
    if expected is not None and result.trace is None:
        ax.axhline(expected * (result.speed or 1.0), color="#555555", linestyle="-.", linewidth=1,
                   label=f"frames published/s ({expected * (result.speed or 1.0):.1f})")
    _mark_replans(ax, result)
    _mark_outages(ax, result)
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("items/s at the sink")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path)
    return True


def plot_drops(result: ReplayResult, path: Path) -> bool:
    if not result.drops:
        return False
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    fig = _figure(6.4, 3.0)
    ax = fig.add_subplot()
    bottom: dict[float, int] = {}
    for k, (reason, series) in enumerate(result.drops.items()):
        xs = [t + 0.5 for t, _ in series]
        ns = [n for _, n in series]
        ax.bar(xs, ns, width=0.9, bottom=[bottom.get(t, 0) for t, _ in series], color=cmap(k % 10), label=reason)
        for t, n in series:
            bottom[t] = bottom.get(t, 0) + n
    _mark_replans(ax, result)
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("items dropped per second")
    last = max(t for series in result.drops.values() for t, _ in series) + 1
    ax.set_xlim(0, max(last, result.seconds, *(r.t + 0.5 for r in result.replans)))
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.savefig(path)
    return True


def plot_reconstructed(result: ReplayResult, path: Path) -> bool:
    """Per protected operator, the share of each second's delivered frames whose output was rebuilt."""
    return _plot_marked(result, result.reconstructed, path, "rebuilt from parity (%)")


def plot_resent(result: ReplayResult, path: Path) -> bool:
    """Per operator with re-sends, the share of each second's delivered frames served from a copy."""
    return _plot_marked(result, result.resent, path, "from re-sent copies (%)")


def _plot_marked(result: ReplayResult, marked: dict[str, list[tuple[float, int, int]]], path: Path,
                 ylabel: str) -> bool:
    if not marked:
        return False
    fig = _figure(6.4, 2.6)
    ax = fig.add_subplot()
    for op, series in marked.items():
        ax.step([t for t, _, _ in series], [100.0 * r / n if n else 0.0 for _, r, n in series], where="post",
                label=f"{op}: {sum(r for _, r, _ in series)} frames")
    _mark_replans(ax, result)
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.savefig(path)
    return True


def plot_plan(plan: Plan | None, path: Path) -> bool:
    """One horizontal bar per location (lowest tier at the bottom), one segment per worker group,
    as long as its worker count, coloured by operator and labelled operator/variant."""
    if plan is None or not plan.workers:
        return False
    locations = sorted({w.location for w in plan.workers}, key=lambda loc: (plan.tiers.get(loc, 0), loc))
    tier_of = {w.location: w.tier for w in plan.workers}
    operators = sorted({w.operator for w in plan.workers})
    from matplotlib import colormaps
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    cmap = colormaps["tab10"]
    colour = {op: cmap(i % 10) for i, op in enumerate(operators)}
    fig = _figure(7.2, max(2.4, 0.6 * len(locations) + 1.4))
    ax = fig.add_subplot()
    for y, loc in enumerate(locations):
        left = 0
        for w in sorted((w for w in plan.workers if w.location == loc), key=lambda w: (w.operator, w.variant)):
            ax.barh(y, w.count, left=left, color=colour[w.operator], edgecolor="white")
            ax.text(left + w.count / 2, y, f"{w.operator}/{w.variant}\n×{w.count} {w.hardware}",
                    ha="center", va="center", fontsize=7, color="black")
            left += w.count
    ax.set_yticks(range(len(locations)), [f"{loc} ({tier_of[loc]})" for loc in locations])
    ax.set_xlabel("workers")
    ax.set_title(f"{plan.name}: {plan.strategy}, {plan.cost.total:.4f} $/h", fontsize=10)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(handles=[Patch(color=colour[op], label=op) for op in operators], loc="upper left",
              bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.savefig(path)
    return True
