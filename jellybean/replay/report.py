"""Reports of a replay run: rich tables on the terminal and a self-contained HTML page with plots.

Predicted beside measured, for the same quantities only: items/s per stream and per operator
(the plan's figure scaled to the load the replay offered), KB/s per link with the link's capacity,
latency end to end (the plan's prediction and the workflow's SLO beside p50/p95/p99) and per stage
and network hop. The planner's accuracy is the zoo's accuracy product and the replay measures
IDF1: each is named, and they are compared only when the zoo's accuracy was measured as IDF1.

`write_html_report` writes `index.html` and its PNGs (matplotlib, Agg canvas) into one directory
and refers to them by relative path, so the directory can be moved or archived whole:

    latency_cdf.png     end-to-end latency CDF with p50 / p95 / p99, the plan's latency and the SLO
    latency_stages.png  latency per stage and hop: mean per item stacked, and a box per segment
    links.png           KB/s per link, measured vs the plan's prediction, and the link's capacity
    throughput.png      items/s at the sink over the run, re-plans marked
    drops.png           items dropped per second by reason, re-plans marked
    plan.png            the plan across tiers: workers per location, labelled operator/variant

A plot without data is left out and the page says so. Problems (bad data, a partial run) are shown
first, in a box that cannot be missed. Terminal tables never cut a number or a name
(`jellybean.tables.fit`): names fold onto more lines, and a terminal too narrow for a table's
numbers gets it as one block of lines per row.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from jellybean.replay.results import LinkMeasure, ReplayResult
from jellybean.spec.plan import Plan
from jellybean.tables import fit

DASH = "—"

# dropped: with a reason (of which late); lost: never accounted for; duplicates: copies discarded.
_CAMERA_COLUMNS = ("camera", "in", "out", "dropped", "late", "lost", "duplicates")


def _camera_counts(c) -> tuple[int, ...]:
    return (c.frames_in, c.frames_out, c.dropped, c.late, c.lost, c.duplicates)


def _f(value: float | None, fmt: str = ".1f", suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return DASH
    return f"{value:{fmt}}{suffix}"


def _pct(value: float | None) -> str:
    return _f(None if value is None else 100 * value, ".1f", " %")


def _predicted(link: LinkMeasure, plan: Plan | None) -> float | None:
    """The link's predicted KB/s: the driver's figure, else the plan's for the same pair."""
    if link.predicted_kb_per_s is not None or plan is None:
        return link.predicted_kb_per_s
    for use in plan.links:
        if use.from_ == link.from_ and use.to == link.to:
            return use.kb_per_s
    return None


def _capacity(link: LinkMeasure, plan: Plan | None) -> float | None:
    """The link's capacity in KB/s: the result's figure, else the plan's bandwidth for the pair."""
    if link.capacity_kb_per_s is not None or plan is None:
        return link.capacity_kb_per_s
    for use in plan.links:
        if use.from_ == link.from_ and use.to == link.to and use.bandwidth_mbps:
            return use.bandwidth_mbps * 1e6 / 8 / 1024
    return None


def _at_load(value: float | None, result: ReplayResult) -> float | None:
    """A plan's figure at the load the replay offered."""
    return None if value is None or result.load is None else value * result.load


def _ratio(measured: float | None, predicted: float | None) -> str:
    return _f(measured / predicted, ".2f", "×") if predicted and measured is not None else DASH


def _throughput_stats(result: ReplayResult) -> tuple[float | None, float | None]:
    rates = [r for _, r in result.throughput]
    if not rates:
        return None, None
    return sum(rates) / len(rates), max(rates)


def _is_idf1(metric: str | None) -> bool:
    return metric is not None and metric.replace(" ", "").replace("-", "").lower() == "idf1"


def _plan_accuracy_name(result: ReplayResult) -> str:
    """What the planner's accuracy figure is: IDF1 when the zoo measured it so, else its product."""
    if _is_idf1(result.plan_accuracy_metric):
        return "planner's predicted IDF1"
    if result.plan_accuracy_metric:
        return f"planner's accuracy ({result.plan_accuracy_metric}, zoo product)"
    return "planner's accuracy (zoo product)"


ACCURACY_NOTE = ("The planner's accuracy is the zoo's accuracy product: each chosen variant's accuracy factor "
                 "(and the zoo's accuracy table, where it has one) multiplied, in whatever metric the zoo "
                 "measured its variants with. The replay measures IDF1 (AI City track 1). They are different "
                 "metrics and are compared only when the zoo's accuracy was measured as IDF1.")


def _summary_rows(result: ReplayResult) -> list[tuple[str, str]]:
    mean_rate, peak_rate = _throughput_stats(result)
    rows = [
        ("scenario", result.scenario),
        ("mode", f"{result.mode}, speed {result.speed:g}×"),
        ("started", result.started_at.isoformat(timespec="seconds")),
        ("duration", _f(result.seconds, ".1f", " s")),
        ("plan cost", _f(result.plan_cost_per_hour, ".4f", " $/h")),
        ("items at the sink mean / peak", f"{_f(mean_rate)} / {_f(peak_rate)} items/s"),
    ]
    idf1 = result.tracking.idf1 if result.tracking is not None else None
    comparable = _is_idf1(result.plan_accuracy_metric)
    if result.plan_predicted_accuracy is not None:
        rows.append((_plan_accuracy_name(result),
                     _pct(result.plan_predicted_accuracy) if comparable else _f(result.plan_predicted_accuracy, ".3f")
                     + ("" if comparable else " (not IDF1)")))
    if result.tracking is not None:
        rows.append(("measured IDF1", _pct(idf1)))
        if comparable and result.plan_predicted_accuracy and idf1 is not None:
            rows.append(("measured / predicted IDF1", _ratio(idf1, result.plan_predicted_accuracy)))
    if result.replans:
        rows.append(("re-plans", ", ".join(f"v{r.version} at {r.t:.1f} s" for r in result.replans)))
    rows.append(("status", "PARTIAL" if result.partial else "complete"))
    for key, value in result.plan_summary.items():
        rows.append((f"plan: {key}", _plain(value)))
    return rows


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_plain(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value)
    return str(value)


# --- the tables, shared by the terminal and the page ---------------------------------------------


@dataclass
class Section:
    """One table of the report: the first `left` columns are text (names), the rest figures."""

    title: str
    header: list[str]
    rows: list[list[Any]]
    left: int = 1
    notes: list[str] = field(default_factory=list)
    bold_last: bool = False
    short: dict[str, str] = field(default_factory=dict)   # header -> abbreviation on the terminal (with a legend)

    def terminal_header(self) -> list[str]:
        return [self.short.get(h, h) for h in self.header]

    def legend(self) -> str | None:
        if not self.short:
            return None
        return "; ".join(f"{short}: {full}" for full, short in self.short.items())


def _latency_section(result: ReplayResult) -> Section:
    pct = result.latency_percentiles()
    values = [v for v in result.latency_ms if math.isfinite(v)]
    within = (sum(1 for v in values if v <= result.latency_slo_ms) / len(values)
              if values and result.latency_slo_ms else None)
    header = [*pct, "plan", "SLO", "within SLO"]
    row = [*(_f(v) for v in pct.values()), _f(result.latency_predicted_ms), _f(result.latency_slo_ms), _pct(within)]
    notes = ["plan: the planner's worst compute + link latency along a route (no queueing); SLO: the "
             "workflow's slo.latency_ms"]
    return Section(f"End-to-end latency, ms ({len(result.latency_ms)} items)", header, [row], left=0, notes=notes)


def _segments_section(result: ReplayResult) -> Section | None:
    if not result.segments:
        return None
    rows = [[s.name, s.sites, s.ms.n, _f(s.ms.mean), _f(s.ms.p50), _f(s.ms.p95), _f(s.ms.p99),
             _f(s.predicted_ms)] for s in result.segments]
    delivered = sum(1 for v in result.latency_ms if math.isfinite(v))
    total = sum(s.ms.mean * s.ms.n for s in result.segments) / delivered if delivered else None
    rows.append(["end to end", "sum of means", delivered, _f(total), "", "", "", ""])
    notes = ["a stage (an operator's name) runs from an item's arrival at its site to its output leaving "
             "(queue, batching, compute); a hop (a → b) from one step's output to the next step's input "
             "(network and brokers). plan: the worker group's latency for a stage, the link's for a hop "
             "(no queueing). Hops between machines assume their clocks agree."]
    return Section("Latency by stage and hop, ms (delivered items)",
                   ["stage or hop", "where", "items", "mean", "p50", "p95", "p99", "plan"], rows, left=2,
                   notes=notes, bold_last=True)


def _rates_section(result: ReplayResult) -> Section | None:
    if not result.rates:
        return None
    rows = [[r.name, _f(r.planned), _f(r.expected), _f(r.measured), _ratio(r.measured, r.expected)]
            for r in result.rates]
    notes = ["per second of recorded video. plan: the plan's figure for all its streams; at this load: "
             "scaled to the frames the replay offered; ratio: measured / plan at this load. Operators "
             "count the plan's items (frames, crops) as their agents received them"]
    notes += [f"{r.name}: {r.note}" for r in result.rates if r.note]
    return Section("Throughput, items/s: plan vs measured",
                   ["quantity", "plan", "plan at this load", "measured", "ratio"], rows, notes=notes)


def _links_section(result: ReplayResult, plan: Plan | None) -> Section | None:
    if not result.links:
        return None
    rows = []
    for link in result.links:
        pred, cap = _predicted(link, plan), _capacity(link, plan)
        at_load = _at_load(pred, result)
        rows.append([f"{link.from_} → {link.to}", f"{link.bytes:,}", _f(link.kb_per_s), _f(pred), _f(at_load),
                     _f(cap, ",.0f"), _ratio(link.kb_per_s, at_load), _pct(link.kb_per_s / cap if cap else None)])
    notes = ["KB/s per second of recorded video. plan: for all the plan's streams; at this load: scaled to "
             "the frames the replay offered (see Throughput); capacity: the link's bandwidth as the plan has "
             "it; ratio: measured / plan at this load; use: measured / capacity"]
    return Section("Links, KB/s: measured vs the plan", ["link", "bytes", "measured", "plan", "plan at this load",
                                                       "capacity", "ratio", "use"], rows, notes=notes)


def _drops_section(result: ReplayResult) -> Section | None:
    if not result.drops:
        return None
    rows = []
    for reason, series in result.drops.items():
        rows.append([reason, sum(n for _, n in series), _f(series[0][0], ".0f"), _f(series[-1][0], ".0f"),
                     max(n for _, n in series)])
    return Section("Items dropped, by reason", ["reason", "items", "first s", "last s", "most in 1 s"], rows)


def _replans_section(result: ReplayResult) -> Section | None:
    if not result.replans:
        return None
    rows = [[r.plan or DASH, _f(r.t, ".1f"), r.version, _f(r.cost_per_hour, ".4f")] for r in result.replans]
    return Section("Re-plans (new plan versions on the routes topic)", ["plan", "at s", "version", "$/h"], rows)


def _tracking_sections(result: ReplayResult) -> list[Section]:
    tr = result.tracking
    if tr is None:
        return []
    header = ["IDF1", "IDP", "IDR", "IDTP", "IDFP", "IDFN", "ground-truth boxes", "scored boxes",
              "one-camera boxes removed"]
    row = [_pct(tr.idf1), _pct(tr.idp), _pct(tr.idr), tr.idtp, tr.idfp, tr.idfn, tr.gt_boxes, tr.predicted_boxes,
           tr.predictions_removed.get("single_camera", 0)]
    notes = [f"{tr.scenario}, AI City track-1 rules: cameras concatenated into one sequence, IoU ≥ {tr.iou:g}, "
             "predicted identities seen in one camera only removed"]
    if result.plan_predicted_accuracy is not None:
        if _is_idf1(result.plan_accuracy_metric):
            header.append("planner's IDF1")
            row.append(_pct(result.plan_predicted_accuracy))
        else:
            notes.append(ACCURACY_NOTE)
    out = [Section("Tracking: measured IDF1 (AI City track 1)", header, [row], left=0, notes=notes,
                   short={"ground-truth boxes": "gt", "scored boxes": "scored", "one-camera boxes removed": "removed"})]
    if tr.per_camera:
        rows = [[name, _pct(m.mota), _pct(m.idf1), m.ids, _pct(m.precision), _pct(m.recall), m.frames, m.gt_boxes,
                 m.predicted_boxes] for name, m in tr.per_camera.items()]
        out.append(Section("Tracking per camera (each alone, no single-camera filter)",
                           ["camera", "MOTA", "IDF1", "ID switches", "precision", "recall", "frames",
                            "ground-truth boxes", "predicted boxes"], rows,
                           short={"ID switches": "IDs", "precision": "prec", "ground-truth boxes": "gt",
                                  "predicted boxes": "pred"}))
    return out


def _cameras_section(result: ReplayResult) -> Section | None:
    if not result.cameras:
        return None
    rows = [[name, *_camera_counts(c)] for name, c in sorted(result.cameras.items())]
    rows.append(["total", *_camera_counts(result.totals())])
    return Section("Frames per camera", list(_CAMERA_COLUMNS), rows, bold_last=True)


def sections(result: ReplayResult, plan: Plan | None = None) -> list[Section]:
    """Every table of the report after the summary, in order (the terminal and the page share them)."""
    found = [_cameras_section(result), _rates_section(result), _latency_section(result),
             _segments_section(result), _links_section(result, plan), _drops_section(result),
             _replans_section(result), *_tracking_sections(result)]
    return [s for s in found if s is not None]


# --- terminal ------------------------------------------------------------------------------------


def _rich_table(section: Section) -> Table:
    table = Table(title=_escape_markup(section.title))
    for i, head in enumerate(section.terminal_header()):
        table.add_column(_escape_markup(head), justify="left" if i < section.left else "right")
    for k, row in enumerate(section.rows):
        style = "bold" if section.bold_last and k == len(section.rows) - 1 else None
        table.add_row(*(_escape_markup(str(v)) for v in row), style=style)
    return table


def render_terminal(result: ReplayResult, console: Console | None = None, plan: Plan | None = None) -> None:
    """Print the run as rich tables: summary, problems, per-camera counts, throughput, latency end
    to end and per stage, links, drops, re-plans, tracking. No number or name is ever cut."""
    console = console or Console()
    summary = Table(title=f"Replay of {_escape_markup(result.scenario)}", show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    for key, value in _summary_rows(result):
        summary.add_row(_escape_markup(key), _escape_markup(value))
    console.print(fit(summary))

    if result.partial or result.problems:
        body = "\n".join(f"• {p}" for p in result.problems) or "the run is partial (no details recorded)"
        console.print(Panel(_escape_markup(body), title="Partial results: problems", border_style="red",
                            expand=False))

    for section in sections(result, plan):
        console.print(fit(_rich_table(section)))
        legend = section.legend()
        for note in section.notes + ([legend] if legend else []):
            console.print(f"[dim]{_escape_markup(note)}[/]", overflow="fold")

    tr = result.tracking
    if tr is not None:
        for name, why in tr.cameras_skipped.items():
            console.print(f"[yellow]not scored[/] {_escape_markup(name)}: {_escape_markup(why)}", overflow="fold")


def _escape_markup(text: str) -> str:
    from rich.markup import escape

    return escape(text)


# --- plots ---------------------------------------------------------------------------------------

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


def _plot_latency(result: ReplayResult, path: Path) -> bool:
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


def _plot_stages(result: ReplayResult, path: Path) -> bool:
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


def _plot_links(result: ReplayResult, path: Path, plan: Plan | None) -> bool:
    if not result.links:
        return False
    labels = [f"{link.from_} → {link.to}" for link in result.links]
    measured = [link.kb_per_s for link in result.links]
    predicted = [_predicted(link, plan) for link in result.links]
    if result.load is not None:
        predicted = [_at_load(p, result) for p in predicted]
    capacity = [_capacity(link, plan) for link in result.links]
    fig = _figure(6.8, max(2.4, 0.8 * len(labels) + 1.2))
    ax = fig.add_subplot()
    ys = range(len(labels))
    ax.barh([y - 0.2 for y in ys], measured, height=0.4, label="measured", color="#1f77b4")
    ax.barh([y + 0.2 for y in ys], [p or 0 for p in predicted], height=0.4, color="#bbbbbb",
            label="plan" if result.load is None else f"plan at the load replayed ({result.load:.2f} of its own)",
            hatch="//", edgecolor="#777777")
    top = max([*measured, *(p or 0 for p in predicted), 1e-9]) * 1.25
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


def _expected_delivered(result: ReplayResult) -> float | None:
    return next((r.expected for r in result.rates if r.name == "frames delivered"), None)


def _plot_throughput(result: ReplayResult, path: Path) -> bool:
    if not result.throughput:
        return False
    ts = [t for t, _ in result.throughput]
    rates = [r for _, r in result.throughput]
    fig = _figure(6.4, 3.0)
    ax = fig.add_subplot()
    ax.plot(ts, rates, marker="." if len(ts) < 60 else None, color="#1f77b4", label="measured")
    expected = _expected_delivered(result)
    if expected is not None:
        ax.axhline(expected * (result.speed or 1.0), color="#555555", linestyle="-.", linewidth=1,
                   label=f"frames published/s ({expected * (result.speed or 1.0):.1f})")
    _mark_replans(ax, result)
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("items/s at the sink")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path)
    return True


def _plot_drops(result: ReplayResult, path: Path) -> bool:
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


def _plot_plan(plan: Plan | None, path: Path) -> bool:
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


# --- HTML ----------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; }
td.l, th.l { text-align: left; }
tr.b td { font-weight: bold; }
.problems { border: 3px solid #c62828; background: #ffebee; padding: 0.5em 1em; margin: 1em 0; }
.problems h2 { color: #c62828; margin-top: 0.2em; }
.note { color: #666; font-style: italic; }
img { max-width: 100%; border: 1px solid #eee; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(header: list[str], rows: list[list[Any]], left: int = 1, bold_last: bool = False) -> str:
    """An HTML table; the first `left` columns are left-aligned text."""
    cls = lambda i: ' class="l"' if i < left else ""  # noqa: E731
    head = "".join(f"<th{cls(i)}>{_e(h)}</th>" for i, h in enumerate(header))
    body = "".join(("<tr class=\"b\">" if bold_last and k == len(rows) - 1 else "<tr>")
                   + "".join(f"<td{cls(i)}>{_e(v)}</td>" for i, v in enumerate(r)) + "</tr>"
                   for k, r in enumerate(rows))
    return f"<table><tr>{head}</tr>{body}</table>"


def _section_html(section: Section | None, heading: bool = False) -> str:
    if section is None:
        return ""
    out = f"<h3>{_e(section.title)}</h3>" if heading else ""
    out += _table(section.header, section.rows, section.left, section.bold_last)
    return out + "".join(f'<p class="note">{_e(n)}</p>' for n in section.notes)


def _img(name: str, ok: bool, alt: str, missing: str) -> str:
    if ok:
        return f'<p><img src="{_e(name)}" alt="{_e(alt)}"></p>'
    return f'<p class="note">{_e(missing)}</p>'


def write_html_report(result: ReplayResult, directory: Path | str, plan: Plan | None = None) -> Path:
    """Write `index.html` and its PNG plots into `directory`; return the path of index.html."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    plots = {
        "latency_cdf.png": _plot_latency(result, directory / "latency_cdf.png"),
        "latency_stages.png": _plot_stages(result, directory / "latency_stages.png"),
        "links.png": _plot_links(result, directory / "links.png", plan),
        "throughput.png": _plot_throughput(result, directory / "throughput.png"),
        "drops.png": _plot_drops(result, directory / "drops.png"),
        "plan.png": _plot_plan(plan, directory / "plan.png"),
    }
    for name, ok in plots.items():
        if not ok:                  # a stale plot from an earlier run must not show
            (directory / name).unlink(missing_ok=True)

    parts = [f"<h1>Replay of {_e(result.scenario)}</h1>"]
    if result.partial or result.problems:
        items = "".join(f"<li>{_e(p)}</li>" for p in result.problems) or "<li>no details recorded</li>"
        parts.append(f'<div class="problems"><h2>Partial results</h2><p>Some data could not be used; '
                     f'the figures below cover the rest.</p><ul>{items}</ul></div>')
    parts.append("<table>" + "".join(f'<tr><th class="l">{_e(k)}</th><td class="l">{_e(v)}</td></tr>'
                                     for k, v in _summary_rows(result)) + "</table>")

    parts.append("<h2>Frames per camera</h2>")
    cams = _cameras_section(result)
    parts.append(_section_html(cams) if cams else '<p class="note">No camera counts recorded.</p>')

    parts.append("<h2>Throughput: plan vs measured</h2>")
    parts.append(_section_html(_rates_section(result)))
    mean_rate, peak_rate = _throughput_stats(result)
    parts.append(_table(["mean items/s at the sink", "peak items/s", "samples"],
                        [[_f(mean_rate), _f(peak_rate), len(result.throughput)]], left=0))
    parts.append(_img("throughput.png", plots["throughput.png"], "throughput over time",
                      "No throughput timeline recorded."))

    parts.append(f"<h2>End-to-end latency ({len(result.latency_ms)} items)</h2>")
    lat = _latency_section(result)
    lat.header = [f"{h} (ms)" if h != "within SLO" else h for h in lat.header]
    parts.append(_section_html(lat))
    parts.append(_img("latency_cdf.png", plots["latency_cdf.png"], "latency CDF", "No latencies measured."))

    parts.append("<h2>Latency by stage and network hop</h2>")
    segs = _segments_section(result)
    parts.append(_section_html(segs) if segs else '<p class="note">No traces from delivered items.</p>')
    parts.append(_img("latency_stages.png", plots["latency_stages.png"], "latency per stage and hop", ""))

    parts.append("<h2>Links: measured vs the plan</h2>")
    parts.append(_section_html(_links_section(result, plan)))
    parts.append(_img("links.png", plots["links.png"], "bandwidth per link", "No link traffic measured."))

    parts.append("<h2>Drops and re-plans over time</h2>")
    drops = _drops_section(result)
    parts.append(_section_html(drops) if drops else '<p class="note">No item was dropped with a reason.</p>')
    parts.append(_img("drops.png", plots["drops.png"], "items dropped per second by reason", ""))
    replans = _replans_section(result)
    parts.append(_section_html(replans, heading=True) if replans else
                 '<p class="note">No re-plan during the run (one plan version on the routes topic).</p>')

    parts.append("<h2>Tracking accuracy</h2>")
    tracking = _tracking_sections(result)
    if not tracking:
        parts.append('<p class="note">Not evaluated (no ground truth or no predictions).</p>')
    for k, section in enumerate(tracking):
        parts.append(_section_html(section, heading=k > 0))
    tr = result.tracking
    if tr is not None and tr.cameras_skipped:
        parts.append("<h3>Cameras not scored</h3>")
        parts.append(_table(["camera", "why"], [[k, v] for k, v in tr.cameras_skipped.items()], left=2))

    parts.append("<h2>The plan across tiers</h2>")
    if result.plan_cost_per_hour is not None:
        parts.append(f"<p>Plan cost {_e(_f(result.plan_cost_per_hour, '.4f'))} $/h; "
                     f"{_e(_plan_accuracy_name(result))} {_e(_f(result.plan_predicted_accuracy, '.3f'))}.</p>")
    parts.append(_img("plan.png", plots["plan.png"], "workers per tier", "No plan given."))
    if plan is not None and plan.workers:
        rows = [[w.location, w.tier, w.hardware, w.operator, w.variant, w.count, _f(w.load), _f(w.capacity),
                 _f(w.latency_ms), _f(w.cost_per_hour, ".4f")]
                for w in sorted(plan.workers, key=lambda w: (plan.tiers.get(w.location, 0), w.location, w.operator))]
        parts.append(_table(["location", "tier", "hardware", "operator", "variant", "workers", "load items/s",
                             "capacity items/s", "latency ms", "$/h"], rows, left=5))

    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Replay of {_e(result.scenario)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")
    index = directory / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
