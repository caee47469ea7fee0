"""The pictures of a plan's report, drawn with matplotlib on the Agg canvas (no pyplot state).

`draw_infrastructure`: sites in columns by tier (lowest tier on the left, as a multipartite
layout), each with its sources and workers; every link the plan records, coloured and widened by
its planned traffic against its bandwidth and labelled "used/capacity Mbps".
`draw_tier_costs`: per tier, compute and network $/h stacked.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from jellybean.planner.report import Site, links, sites, sources_text, tier_costs
from jellybean.spec.plan import LinkUse, Plan

UNLIMITED = "#1f77b4"  # a link with traffic but no bandwidth limit
IDLE = "#b0b0b0"       # a link the plan sends nothing over


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def layout(plan: Plan) -> dict[str, tuple[float, float]]:
    """Site -> (column, row). Columns are tiers (a multipartite layout). Within a column sites are
    ordered from the top tier down by the mean row of their neighbours above (so few links cross);
    the widest tier is spread evenly and every other site sits level with its placed neighbours."""
    by_rank: dict[int, list[str]] = defaultdict(list)
    for s in sites(plan):
        by_rank[s.rank].append(s.name)
    ranks = sorted(by_rank)
    rank_of = {name: r for r in ranks for name in by_rank[r]}
    neighbours: dict[str, set[str]] = defaultdict(set)
    for l in plan.links:
        neighbours[l.from_].add(l.to)
        neighbours[l.to].add(l.from_)

    order: dict[str, float] = {}
    for r in reversed(ranks):
        above = {n: _mean({m for m in neighbours[n] if rank_of[m] > r}, order, default=-1.0) for n in by_rank[r]}
        for i, n in enumerate(sorted(by_rank[r], key=lambda n: (above[n], n))):
            order[n] = float(i)

    widest = max(ranks, key=lambda r: (len(by_rank[r]), -r))
    y = {n: order[n] for n in by_rank[widest]}
    for r in [r for r in ranks if r > widest] + [r for r in reversed(ranks) if r < widest]:
        wanted = {}
        for n in by_rank[r]:
            placed = {m for m in neighbours[n] if m in y and (rank_of[m] < r if r > widest else rank_of[m] > r)}
            wanted[n] = _mean(placed, y, default=order[n] * len(by_rank[widest]) / len(by_rank[r]))
        y.update(_spread(wanted, gap=1.0))
    top = max(y.values(), default=0.0)
    return {n: (float(ranks.index(rank_of[n])), top - y[n]) for n in y}


def _mean(names: set[str], y: dict[str, float], default: float) -> float:
    values = [y[n] for n in names if n in y]
    return sum(values) / len(values) if values else default


def _spread(wanted: dict[str, float], gap: float) -> dict[str, float]:
    """Positions as near `wanted` as possible, in its order, at least `gap` apart."""
    order = sorted(wanted, key=lambda n: (wanted[n], n))
    out: dict[str, float] = {}
    last = None
    for name in order:
        value = wanted[name] if last is None else max(wanted[name], last + gap)
        out[name] = last = value
    # Centre a group that was pushed down on the positions it asked for.
    shift = (sum(wanted.values()) - sum(out.values())) / len(out) if out else 0.0
    return {n: v + shift for n, v in out.items()}


def link_label(link: LinkUse) -> str:
    m = link.mbps
    used = "0" if m == 0 else f"{m:.1g}" if m < 0.01 else f"{m:.2f}" if m < 10 else f"{m:.1f}"
    capacity = f"{link.bandwidth_mbps:g}" if link.bandwidth_mbps else "∞"
    return f"{used}/{capacity} Mbps"


def _site_text(site: Site) -> str:
    lines = [site.name]
    if site.sources:
        lines.append(sources_text(site))
    for w in site.workers:
        lines.append(f"{w.operator}/{w.variant} ×{w.count}")
    return "\n".join(lines)


def draw_infrastructure(plan: Plan, path: Path) -> None:
    from matplotlib import colormaps
    from matplotlib.colors import Normalize
    from matplotlib.cm import ScalarMappable
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path as MplPath

    pos = layout(plan)
    all_sites = sites(plan)
    columns = sorted({x for x, _ in pos.values()})
    rows = max((sum(1 for p in pos.values() if p[0] == c) for c in columns), default=1)
    # Grows with the tiers and the sites in the fullest one, up to a size a browser shows whole.
    fig = _figure(min(max(6.4, 3.4 * len(columns) + 1.2), 30.0), min(max(3.6, 0.95 * rows + 1.6), 40.0))
    ax = fig.add_subplot()
    cmap, norm = colormaps["RdYlGn_r"], Normalize(0.0, 1.0)
    ys = [p[1] for p in pos.values()]
    middle = (max(ys) + min(ys)) / 2 if ys else 0.0

    for link in links(plan):
        (x1, y1), (x2, y2) = pos[link.from_], pos[link.to]
        u = link.utilisation
        if link.kb_per_s <= 0:
            colour, width, style = IDLE, 1.0, ":"
        elif u is None:
            colour, width, style = UNLIMITED, 2.0, "-"
        else:
            colour, width, style = cmap(norm(min(u, 1.0))), 1.5 + 6.0 * min(u, 1.0), "-"
        # A link that skips a tier bends up or down, away from the middle, so that it does not run
        # through the sites between; drawn as a quadratic Bezier in data coordinates, label on the curve.
        dx, dy = x2 - x1, y2 - y1
        bend = 0.0
        if abs(dx) > 1.01:
            bend = 0.5 * abs(dx) * (1 if (y1 + y2) / 2 > middle else -1)
            control = ((x1 + x2) / 2, (y1 + y2) / 2 + bend)
        elif abs(dx) < 0.01:  # inside one tier: bow out to the right of the column
            bend = min(0.1 + 0.03 * abs(dy), 0.25)
            control = (x1 + bend * 2, (y1 + y2) / 2)
        else:
            control = ((x1 + x2) / 2, (y1 + y2) / 2)
        ax.add_patch(PathPatch(MplPath([(x1, y1), control, (x2, y2)], [MplPath.MOVETO, MplPath.CURVE3, MplPath.CURVE3]),
                               fill=False, edgecolor=colour, linewidth=width, linestyle=style, zorder=1))
        if bend:
            lx, ly = (x1 + x2) / 4 + control[0] / 2, (y1 + y2) / 4 + control[1] / 2
        else:
            lx, ly = x1 + 0.42 * dx, y1 + 0.42 * dy
        ax.text(lx, ly, link_label(link), fontsize=7, ha="center", va="center", zorder=3,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec=colour, lw=0.6, alpha=0.9))

    tier_colour = {0: "#e3f2fd", 1: "#e8f5e9", 2: "#fff8e1", 3: "#fce4ec"}
    for site in all_sites:
        x, y = pos[site.name]
        ax.text(x, y, _site_text(site), fontsize=7.5, ha="center", va="center", zorder=4,
                bbox=dict(boxstyle="round,pad=0.35", fc=tier_colour.get(site.rank, "#eeeeee"), ec="#555555"))
    names = {}
    for site in all_sites:
        names[pos[site.name][0]] = site.tier
    top = max((p[1] for p in pos.values()), default=0.0)
    cost = {c.tier: c.total for c in tier_costs(plan)}
    for x, tier in names.items():
        ax.text(x, top + 0.75, tier, fontsize=10, fontweight="bold", ha="center", va="bottom")
        ax.text(x, top + 0.7, f"{cost.get(tier, 0.0):.4f} $/h", fontsize=8, ha="center", va="top", color="#444444")
    ax.set_xlim(min(columns) - 0.55, max(columns) + 0.55)
    ax.set_ylim(min((p[1] for p in pos.values()), default=0.0) - 0.7, top + 1.2)
    ax.set_axis_off()
    ax.set_title(f"{plan.name}: {plan.strategy}, {plan.cost.total:.4f} $/h "
                 f"(compute {plan.cost.compute:.4f} + network {plan.cost.network:.4f})", fontsize=10)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.4, pad=0.01)
    bar.set_label("link use: planned traffic / bandwidth")
    fig.savefig(path)


def draw_tier_costs(plan: Plan, path: Path) -> None:
    costs = tier_costs(plan)
    fig = _figure(6.4, 3.4)
    ax = fig.add_subplot()
    xs = range(len(costs))
    compute = [c.compute for c in costs]
    network = [c.network for c in costs]
    ax.bar(xs, compute, color="#1f77b4", label="compute")
    ax.bar(xs, network, bottom=compute, color="#ff7f0e", label="network (links leaving the tier)")
    for x, c in zip(xs, costs):
        ax.text(x, c.total, f"{c.total:.4f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), [c.tier for c in costs])
    ax.set_ylabel("$/h")
    ax.set_ylim(0, max((c.total for c in costs), default=0.0) * 1.15 or 1.0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"Cost per tier, {plan.cost.total:.4f} $/h in all", fontsize=10)
    fig.savefig(path)
