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
    links_time.png      (up --isolate) KB/s on each link's wire over the run, outages shaded
    plans.png           (re-plans or a load trace) the plan in effect over time: $/h and predicted accuracy
    throughput.png      items/s at the sink over the run, re-plans marked
    drops.png           items dropped per second by reason, re-plans marked
    reconstructed.png   share of frames with an output rebuilt from parity, per second (with redundancy)
    resent.png          share of frames with an output served from a re-sent copy, per second (with resend)
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

from jellybean.page_style import CSS
from jellybean.replay import report_plots
from jellybean.replay.compare import at_load, capacity_kb_per_s, predicted_kb_per_s
from jellybean.replay.results import ReplayResult
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
    if result.trace is not None:
        rows.append(("load trace", result.trace + (f" ({result.held_back:,} frames held back by it)"
                                                   if result.held_back else "")))
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
    wired = any(link.wire_bytes is not None for link in result.links)
    rows = []
    for link in result.links:
        pred, cap = predicted_kb_per_s(link, plan), capacity_kb_per_s(link, plan)
        scaled = at_load(pred, result, link)
        row = [f"{link.from_} → {link.to}", f"{link.bytes:,}", _f(link.kb_per_s), _f(pred), _f(scaled),
               _f(cap, ",.0f"), _ratio(link.kb_per_s, scaled)]
        if wired:
            row += [_f(link.wire_kb_per_s), _ratio(link.wire_kb_per_s, scaled) if link.wire_kb_per_s is not None else "-"]
        rows.append(row + [_pct(link.use)])
    notes = ["KB/s per second of recorded video. measured: the items' bytes as the senders counted them; plan: "
             "for all the plan's streams; at this load: scaled to the frames the replay offered from the streams "
             "upstream of the link (a replay of some sites' cameras loads only their uplinks); "
             "capacity: the link's bandwidth as the plan has it; ratio: measured / plan at this load"]
    if wired:
        notes.append("wire: bytes the link's veth sent that way (kernel counters: frames with their MQTT, TLS, TCP "
                     "and IP headers, acknowledgements, heartbeats and metrics), from the replay's first frame until "
                     "the last result; use: wire / capacity")
    else:
        notes.append("use: measured / capacity")
    head = ["link", "bytes", "measured", "plan", "plan at this load", "capacity", "ratio"]
    head += ["wire", "wire / plan at load"] if wired else []
    return Section("Links, KB/s: measured vs the plan", head + ["use"], rows, notes=notes)


def _drops_section(result: ReplayResult) -> Section | None:
    if not result.drops:
        return None
    rows = []
    for reason, series in result.drops.items():
        rows.append([reason, sum(n for _, n in series), _f(series[0][0], ".0f"), _f(series[-1][0], ".0f"),
                     max(n for _, n in series)])
    return Section("Items dropped, by reason", ["reason", "items", "first s", "last s", "most in 1 s"], rows)


def _reconstructed_section(result: ReplayResult) -> Section | None:
    return _marked_section(result.reconstructed, "Outputs rebuilt from parity (redundancy)", "frames rebuilt",
                           "a frame counts when its output of the operator was rebuilt by the decoder beside the "
                           "operator's consumer, because that output was late or lost")


def _resent_section(result: ReplayResult) -> Section | None:
    return _marked_section(result.resent, "Outputs served from re-sent copies (resend)", "frames re-sent",
                           "a frame counts when its output of the operator came from a copy its producer sent again "
                           "because no replica had served the item in time, and the copy's output came first")


def _sampling_section(result: ReplayResult) -> Section | None:
    s = result.sampling
    if s is None:
        return None
    share = 100.0 * s.embedded / s.crops if s.crops else 0.0
    fewer = f"{s.crops / s.embedded:.2f}×" if s.embedded else "—"
    return Section("Sampled re-ID (approximate association)",
                   ["frames", "crops", "crops embedded", "share %", "fewer inferences"],
                   [[s.frames, s.crops, s.embedded, _f(share, ".2f"), fewer]],
                   notes=["frames: delivered with the sampled re-ID's count; crops: the boxes their results carry; "
                          "crops embedded: those the sampled re-ID ran the model on (each track's first views, then "
                          "a spaced sample until the association decision settles)"])


def _marked_section(marked: dict[str, list[tuple[float, int, int]]], title: str, column: str,
                    note: str) -> Section | None:
    if not marked:
        return None
    rows = []
    for op, series in marked.items():
        rebuilt, delivered = sum(r for _, r, _ in series), sum(n for _, _, n in series)
        busiest = max(series, key=lambda x: x[1] / x[2] if x[2] else 0.0)
        rows.append([op, rebuilt, delivered, _f(100.0 * rebuilt / delivered if delivered else 0.0, ".2f"),
                     _f(100.0 * busiest[1] / busiest[2] if busiest[2] else 0.0, ".1f"), _f(busiest[0], ".0f")])
    return Section(title, ["operator", column, "frames delivered", "share %", "most in 1 s %", "at s"], rows,
                   notes=[note])


def _replans_section(result: ReplayResult) -> Section | None:
    if not result.replans:
        return None
    rows = [[r.plan or DASH, _f(r.t, ".1f"), r.version, _f(r.cost_per_hour, ".4f"), _f(r.accuracy, ".3f")]
            for r in result.replans]
    return Section("Re-plans (new plan versions on the routes topic)",
                   ["plan", "at s", "version", "$/h", "predicted accuracy"], rows)


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


def _outages_section(result: ReplayResult) -> Section | None:
    if not result.outages:
        return None
    rows = [[o.link, _f(o.down_at), _f(o.up_at), _f(o.seconds),
             ", ".join(f"{site} {n:,}" for site, n in sorted(o.peak_held.items())) or DASH,
             f"{o.frames_captured:,}", f"{o.frames_delivered:,}", _f(o.latency_p50_ms), _f(o.latency_max_ms)]
            for o in result.outages]
    return Section("Link outages (seconds since the start)", ["link", "down at", "up at", "lasted", "most held",
                                                               "frames captured", "delivered", "their p50 ms",
                                                               "their max ms"], rows,
                   notes=["as the wire samples (every 0.5 s) saw each link; most held: the most messages each end's "
                          "broker held meanwhile (its $SYS store count: retained messages and the queues of absent "
                          "persistent clients, the cut bridge's among them); frames captured while it was down, how "
                          "many of their results were delivered, and their end-to-end latency: the delay the outage "
                          "caused"])


def sections(result: ReplayResult, plan: Plan | None = None) -> list[Section]:
    """Every table of the report after the summary, in order (the terminal and the page share them)."""
    found = [_cameras_section(result), _rates_section(result), _latency_section(result),
             _segments_section(result), _links_section(result, plan), _outages_section(result), _drops_section(result),
             _reconstructed_section(result), _resent_section(result), _sampling_section(result),
             _replans_section(result),
             *_tracking_sections(result)]
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


# --- HTML ----------------------------------------------------------------------------------------

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
        "latency_cdf.png": report_plots.plot_latency(result, directory / "latency_cdf.png"),
        "latency_stages.png": report_plots.plot_stages(result, directory / "latency_stages.png"),
        "links.png": report_plots.plot_links(result, directory / "links.png", plan),
        "links_time.png": report_plots.plot_links_over_time(result, directory / "links_time.png"),
        "plans.png": report_plots.plot_plans_over_time(result, directory / "plans.png"),
        "throughput.png": report_plots.plot_throughput(result, directory / "throughput.png"),
        "drops.png": report_plots.plot_drops(result, directory / "drops.png"),
        "reconstructed.png": report_plots.plot_reconstructed(result, directory / "reconstructed.png"),
        "resent.png": report_plots.plot_resent(result, directory / "resent.png"),
        "plan.png": report_plots.plot_plan(plan, directory / "plan.png"),
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
    if plots["links_time.png"]:
        parts.append(_img("links_time.png", True, "wire KB/s per link over time, outages shaded", ""))
    outages = _outages_section(result)
    if outages:
        parts.append(_section_html(outages, heading=True))

    parts.append("<h2>Drops and re-plans over time</h2>")
    drops = _drops_section(result)
    parts.append(_section_html(drops) if drops else '<p class="note">No item was dropped with a reason.</p>')
    parts.append(_img("drops.png", plots["drops.png"], "items dropped per second by reason", ""))
    rebuilt = _reconstructed_section(result)
    if rebuilt:
        parts.append(_section_html(rebuilt, heading=True))
        parts.append(_img("reconstructed.png", plots["reconstructed.png"], "share of frames with a rebuilt output, "
                          "per second", ""))
    resent = _resent_section(result)
    if resent:
        parts.append(_section_html(resent, heading=True))
        parts.append(_img("resent.png", plots["resent.png"], "share of frames served from a re-sent copy, per second",
                          ""))
    sampled = _sampling_section(result)
    if sampled:
        parts.append(_section_html(sampled, heading=True))
    replans = _replans_section(result)
    parts.append(_section_html(replans, heading=True) if replans else
                 '<p class="note">No re-plan during the run (one plan version on the routes topic).</p>')
    if plots["plans.png"]:
        parts.append(_img("plans.png", True, "the plan in effect over time: $/h and predicted accuracy", ""))

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
