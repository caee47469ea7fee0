"""A plan's report as one self-contained HTML page: `index.html` and its PNGs in one directory,
referred to by relative path (no scripts, nothing fetched), styled as the replay report is.

    infrastructure.png   sites by tier with their workers; links by planned traffic / bandwidth
    tier_costs.png       compute and network $/h per tier, stacked

Every number in a table is written in full, and its exact value is in the cell's `data-value`
attribute, so that a program reading the page gets the plan's own figures.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from jellybean.planner.extract import BINDING_FRACTION
from jellybean.planner.report import Comparison, headroom, links, sites, sources_text, tier_costs, worker_count
from jellybean.planner.report_plots import draw_infrastructure, draw_tier_costs, link_label
from jellybean.page_style import CSS
from jellybean.spec.plan import Plan

DASH = "—"
FULL = "full"  # the figures given as inputs (bandwidths, latencies, prices, targets) are shown as given
USD = ",.6f"   # $/h: to the ten-thousandth of a cent
LEFT = ' class="l"'



class Num:
    """A table cell holding a number: shown with `fmt` (FULL: every digit of the value, no exponent),
    exact in data-value."""

    def __init__(self, value: float | int | None, fmt: str = ",.3f", suffix: str = "") -> None:
        self.value, self.fmt, self.suffix = value, fmt, suffix

    def html(self) -> str:
        if self.value is None or (isinstance(self.value, float) and not math.isfinite(self.value)):
            return f"<td>{DASH}</td>"
        text = full(self.value) if self.fmt == FULL else format(self.value, self.fmt)
        return f'<td data-value="{self.value!r}">{_e(text + self.suffix)}</td>'


def full(value: float | int) -> str:
    from numpy import format_float_positional

    return str(value) if isinstance(value, int) else format_float_positional(value, trim="-")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cell(value: Any, left: bool) -> str:
    if isinstance(value, Num):
        return value.html()
    return f"<td{LEFT if left else ''}>{_e(value)}</td>"


def _table(table_id: str, header: list[str], rows: list[list[Any]], left: int = 1) -> str:
    """An HTML table; the first `left` columns are left-aligned text."""
    head = "".join(f"<th{LEFT if i < left else ''}>{_e(h)}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(_cell(v, i < left) for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f'<table id="{_e(table_id)}"><tr>{head}</tr>{body}</table>'


def _pct(value: float | None) -> Num:
    return Num(None if value is None else 100 * value, ".1f", " %")


def _summary(plan: Plan) -> list[list[Any]]:
    s, pr = plan.solver, plan.predicted
    rows: list[list[Any]] = [
        ["strategy", plan.strategy],
        ["solver", f"{s.status}, gap {DASH if s.gap is None else format(s.gap, '.2%')}, "
                   f"{s.seconds:g} s ({s.backend or 'no backend'})"],
        ["total $/h", Num(plan.cost.total, USD)],
        ["compute $/h", Num(plan.cost.compute, USD)],
        ["network $/h", Num(plan.cost.network, USD)],
        ["accuracy", Num(pr.accuracy, ".6f")],
        ["accuracy target", Num(pr.accuracy_target, FULL)],
        ["latency ms (compute + links, worst route)", Num(pr.latency_ms, ",.3f")],
        ["latency bound ms", Num(pr.latency_bound_ms, FULL)],
        ["workers", Num(worker_count(plan), "d")],
        ["variants", ", ".join(f"{o}={v}" for o, v in plan.variants.items())],
    ]
    return rows


def _link_rows(plan: Plan) -> list[list[Any]]:
    rows = []
    for l in links(plan):
        bind = l.utilisation is not None and l.utilisation >= BINDING_FRACTION
        rows.append([l.from_, l.to, Num(l.kb_per_s, ",.3f"), Num(l.mbps, ",.6f"),
                     Num(l.bandwidth_mbps, FULL) if l.bandwidth_mbps else "unlimited", _pct(l.utilisation),
                     link_label(l), Num(l.latency_ms, FULL), Num(l.cost_per_gb, FULL), Num(l.cost_per_hour, USD),
                     "bandwidth binds" if bind else ""])
    return rows


def _site_rows(plan: Plan) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for s in sites(plan):
        if not s.workers:
            rows.append([s.name, s.tier, sources_text(s), "", "no workers", "", "", "", "", "", ""])
        for w in s.workers:
            rows.append([s.name, s.tier, sources_text(s), w.hardware, w.operator, w.variant, Num(w.count, "d"),
                         Num(w.load, ",.3f"), Num(w.capacity, ",.3f"), _pct(w.utilisation), Num(w.cost_per_hour, USD)])
    return rows


def _cost_rows(plan: Plan) -> list[list[Any]]:
    rows: list[list[Any]] = [[c.tier, Num(c.compute, USD), Num(c.network, USD), Num(c.total, USD)]
                             for c in tier_costs(plan)]
    rows.append(["plan total", Num(plan.cost.compute, USD), Num(plan.cost.network, USD), Num(plan.cost.total, USD)])
    return rows


def _binding(plan: Plan) -> str:
    items = "".join(f"<li>{_e(b)}</li>" for b in plan.binding) or "<li>none: every constraint has slack</li>"
    rows = [[what, Num(planned, ",.4f"), Num(limit, ",.4f"), Num(slack, ",.4f"), _pct(slack / limit if limit else None)]
            for what, planned, limit, slack in headroom(plan)]
    return (f"<p>A constraint binds when the plan uses at least {BINDING_FRACTION:.1%} of its limit: every worker "
            f"of a site's hardware, a link's bandwidth, the accuracy target, the latency bound.</p><ul>{items}</ul>"
            "<h3>Headroom, tightest first</h3>"
            + _table("headroom", ["limit", "planned", "limit value", "slack", "slack of limit"], rows))


def _diff(a: float | None, b: float | None, fmt: str = USD) -> Num:
    return Num(None if a is None or b is None else b - a, "+" + fmt)


def _compare(c: Comparison) -> str:
    a, b = c.a, c.b
    rows: list[list[Any]] = [
        ["strategy", a.strategy, b.strategy, ""],
        ["solver status", a.solver.status, b.solver.status, ""],
        ["total $/h", Num(a.cost.total, USD), Num(b.cost.total, USD), _diff(a.cost.total, b.cost.total)],
        ["compute $/h", Num(a.cost.compute, USD), Num(b.cost.compute, USD), _diff(a.cost.compute, b.cost.compute)],
        ["network $/h", Num(a.cost.network, USD), Num(b.cost.network, USD), _diff(a.cost.network, b.cost.network)],
    ]
    for tier, ta, tb in c.tiers():
        for what in ("compute", "network", "total"):
            va = getattr(ta, what) if ta else 0.0
            vb = getattr(tb, what) if tb else 0.0
            rows.append([f"{tier} {what} $/h", Num(va, USD), Num(vb, USD), _diff(va, vb)])
    rows.append(["workers", Num(worker_count(a), "d"), Num(worker_count(b), "d"),
                 Num(worker_count(b) - worker_count(a), "+d")])
    for tier, na, nb in c.workers_per_tier():
        rows.append([f"{tier} workers", Num(na, "d"), Num(nb, "d"), Num(nb - na, "+d")])
    for op in c.operators():
        va, vb = a.variants.get(op, DASH), b.variants.get(op, DASH)
        rows.append([f"{op} variant", va, vb, "same" if va == vb else "differs"])
    pa, pb = a.predicted, b.predicted
    rows.append(["accuracy", Num(pa.accuracy, ".6f"), Num(pb.accuracy, ".6f"), _diff(pa.accuracy, pb.accuracy, ".6f")])
    rows.append(["latency ms", Num(pa.latency_ms, ",.3f"), Num(pb.latency_ms, ",.3f"),
                 _diff(pa.latency_ms, pb.latency_ms, ",.3f")])
    rel = c.relative
    more = "more" if c.difference >= 0 else "less"
    sentence = (f'<p id="cost-difference" data-value="{c.difference!r}">{_e(b.strategy)} costs '
                f"{_e(format(abs(c.difference), USD))} $/h {more} than {_e(a.strategy)}"
                + (f" ({_e(format(abs(rel), '.2%'))})" if rel is not None else "")
                + f": {_e(format(b.cost.total, USD))} against {_e(format(a.cost.total, USD))} $/h.</p>")
    return sentence + _table("compare", ["", a.strategy, b.strategy, f"difference ({b.strategy} − {a.strategy})"],
                             rows, left=1)


def write_plan_report(plan: Plan, directory: Path | str, compare: Plan | None = None,
                      compare_note: str | None = None) -> Path:
    """Write `index.html`, `infrastructure.png` and `tier_costs.png` into `directory`; return index.html.
    `compare` is a second plan of the same problem (a baseline), shown side by side; `compare_note`
    says why there is none when one was asked for."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    draw_infrastructure(plan, directory / "infrastructure.png")
    draw_tier_costs(plan, directory / "tier_costs.png")

    title = f"Plan {plan.name}: {plan.strategy}"
    parts = [f"<h1>{_e(title)}</h1>", _table("summary", ["", ""], _summary(plan), left=2)]

    parts.append("<h2>Infrastructure and planned traffic</h2>")
    parts.append('<p><img src="infrastructure.png" alt="sites by tier and links by planned traffic"></p>')
    parts.append('<p class="note">Sites in columns by tier, lowest on the left; data moves to the right. A link\'s '
                 "colour and width show its planned traffic against its bandwidth (green idle, red full); blue: "
                 "traffic over a link without a limit; dotted grey: a link the plan sends nothing over. Links "
                 "without a limit that carry nothing are not drawn.</p>")
    parts.append(_table("links", ["from", "to", "planned KB/s", "planned Mbps", "bandwidth Mbps", "use", "label",
                                  "latency ms", "$/GB", "$/h", "binds"], _link_rows(plan), left=2))

    parts.append("<h2>Workers and variants per site</h2>")
    parts.append(_table("sites", ["site", "tier", "sources", "hardware", "operator", "variant", "workers",
                                  "load items/s", "capacity items/s", "use", "$/h"], _site_rows(plan), left=6))

    parts.append("<h2>Cost per tier</h2>")
    parts.append('<p><img src="tier_costs.png" alt="compute and network cost per tier"></p>')
    parts.append('<p class="note">Network cost counts towards the tier whose sites send over the link.</p>')
    parts.append(_table("tier-costs", ["tier", "compute $/h", "network $/h", "total $/h"], _cost_rows(plan)))

    parts.append("<h2>Binding constraints</h2>")
    parts.append(_binding(plan))

    if compare is not None:
        parts.append(f"<h2>Compared with {_e(compare.strategy)}</h2>")
        parts.append(_compare(Comparison(plan, compare)))
    elif compare_note:
        parts.append("<h2>Comparison</h2>")
        parts.append(f'<div class="problems"><p>{_e(compare_note)}</p></div>')

    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
            f"<style>{CSS}</style></head>\n<body>\n" + "\n".join(parts) + "\n</body></html>\n")
    index = directory / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
