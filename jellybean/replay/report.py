"""Reports of a replay run: rich tables on the terminal and a self-contained HTML page with plots.

`write_html_report` writes `index.html` and its PNGs (matplotlib, Agg canvas) into one directory
and refers to them by relative path, so the directory can be moved or archived whole:

    latency_cdf.png   end-to-end latency CDF with p50 / p95 / p99
    links.png         KB/s per link, measured vs the plan's prediction
    throughput.png    delivered items/s over the run
    plan.png          the plan across tiers: workers per location, labelled operator/variant

A plot without data is left out and the page says so. Problems (bad data, a partial run) are shown
first, in a box that cannot be missed.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from jellybean.replay.results import LinkMeasure, ReplayResult
from jellybean.spec.plan import Plan

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


def _ratio(measured: float, predicted: float | None) -> str:
    return _f(measured / predicted, ".2f", "×") if predicted else DASH


def _throughput_stats(result: ReplayResult) -> tuple[float | None, float | None]:
    rates = [r for _, r in result.throughput]
    if not rates:
        return None, None
    return sum(rates) / len(rates), max(rates)


def _summary_rows(result: ReplayResult) -> list[tuple[str, str]]:
    mean_rate, peak_rate = _throughput_stats(result)
    rows = [
        ("scenario", result.scenario),
        ("mode", f"{result.mode}, speed {result.speed:g}×"),
        ("started", result.started_at.isoformat(timespec="seconds")),
        ("duration", _f(result.seconds, ".1f", " s")),
        ("plan cost", _f(result.plan_cost_per_hour, ".4f", " $/h")),
        ("plan predicted accuracy", _f(result.plan_predicted_accuracy, ".3f")),
        ("throughput mean / peak", f"{_f(mean_rate)} / {_f(peak_rate)} items/s"),
    ]
    if result.tracking is not None:
        rows.append(("measured IDF1", _pct(result.tracking.idf1)))
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


# --- terminal ------------------------------------------------------------------------------------


def render_terminal(result: ReplayResult, console: Console | None = None, plan: Plan | None = None) -> None:
    """Print the run as rich tables: summary, problems, per-camera counts, latency, links, tracking."""
    console = console or Console()
    summary = Table(title=f"Replay of {result.scenario}", show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    for key, value in _summary_rows(result):
        summary.add_row(key, value)
    console.print(summary)

    if result.partial or result.problems:
        body = "\n".join(f"• {p}" for p in result.problems) or "the run is partial (no details recorded)"
        console.print(Panel(_escape_markup(body), title="Partial results: problems", border_style="red",
                            expand=False))

    if result.cameras:
        cams = Table(title="Frames per camera")
        for col in _CAMERA_COLUMNS:
            cams.add_column(col, justify="left" if col == "camera" else "right")
        for name, c in sorted(result.cameras.items()):
            cams.add_row(_escape_markup(name), *(str(v) for v in _camera_counts(c)))
        cams.add_row("total", *(str(v) for v in _camera_counts(result.totals())), style="bold")
        console.print(cams)

    lat = Table(title=f"End-to-end latency, ms ({len(result.latency_ms)} items)")
    pct = result.latency_percentiles()
    for key in pct:
        lat.add_column(key, justify="right")
    lat.add_row(*(_f(v) for v in pct.values()))
    console.print(lat)

    if result.links:
        links = Table(title="Links: measured vs predicted")
        for col in ("from", "to", "bytes", "KB/s", "predicted KB/s", "measured/predicted"):
            links.add_column(col, justify="left" if col in ("from", "to") else "right")
        for link in result.links:
            pred = _predicted(link, plan)
            links.add_row(_escape_markup(link.from_), _escape_markup(link.to), f"{link.bytes:,}",
                          _f(link.kb_per_s), _f(pred), _ratio(link.kb_per_s, pred))
        console.print(links)

    tr = result.tracking
    if tr is not None:
        track = Table(title=f"Tracking ({tr.scenario}, AI City track 1, IoU ≥ {tr.iou:g})")
        for col in ("IDF1", "IDP", "IDR", "gt boxes", "scored boxes", "removed (one camera)"):
            track.add_column(col, justify="right")
        track.add_row(_pct(tr.idf1), _pct(tr.idp), _pct(tr.idr), str(tr.gt_boxes), str(tr.predicted_boxes),
                      str(tr.predictions_removed.get("single_camera", 0)))
        console.print(track)
        if tr.per_camera:
            per = Table(title="Tracking per camera (each alone)")
            for col in ("camera", "MOTA", "IDF1", "ID switches", "precision", "recall", "frames", "gt boxes"):
                per.add_column(col, justify="left" if col == "camera" else "right")
            for name, m in tr.per_camera.items():
                per.add_row(_escape_markup(name), _pct(m.mota), _pct(m.idf1), str(m.ids), _pct(m.precision),
                            _pct(m.recall), str(m.frames), str(m.gt_boxes))
            console.print(per)
        for name, why in tr.cameras_skipped.items():
            console.print(f"[yellow]not scored[/] {_escape_markup(name)}: {_escape_markup(why)}")


def _escape_markup(text: str) -> str:
    from rich.markup import escape

    return escape(text)


# --- plots ---------------------------------------------------------------------------------------


def _figure(width: float, height: float):
    from matplotlib.figure import Figure   # the Agg canvas, no pyplot state

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _plot_latency(result: ReplayResult, path: Path) -> bool:
    values = sorted(v for v in result.latency_ms if math.isfinite(v))
    if not values:
        return False
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    n = len(values)
    ax.step(values, [(i + 1) / n for i in range(n)], where="post", color="#1f77b4")
    pct = result.latency_percentiles()
    for key, colour in (("p50", "#2ca02c"), ("p95", "#ff7f0e"), ("p99", "#d62728")):
        ax.axvline(pct[key], color=colour, linestyle="--", linewidth=1, label=f"{key} {pct[key]:.1f} ms")
    ax.set_xlabel("end-to-end latency (ms)")
    ax.set_ylabel("fraction of items")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.savefig(path)
    return True


def _plot_links(result: ReplayResult, path: Path, plan: Plan | None) -> bool:
    if not result.links:
        return False
    labels = [f"{link.from_} → {link.to}" for link in result.links]
    measured = [link.kb_per_s for link in result.links]
    predicted = [_predicted(link, plan) for link in result.links]
    fig = _figure(6.4, max(2.4, 0.55 * len(labels) + 1.2))
    ax = fig.add_subplot()
    ys = range(len(labels))
    ax.barh([y - 0.2 for y in ys], measured, height=0.4, label="measured", color="#1f77b4")
    ax.barh([y + 0.2 for y in ys], [p or 0 for p in predicted], height=0.4, label="predicted", color="#bbbbbb",
            hatch="//", edgecolor="#777777")
    ax.set_yticks(list(ys), labels)
    ax.invert_yaxis()
    ax.set_xlabel("KB/s")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right")
    fig.savefig(path)
    return True


def _plot_throughput(result: ReplayResult, path: Path) -> bool:
    if not result.throughput:
        return False
    ts = [t for t, _ in result.throughput]
    rates = [r for _, r in result.throughput]
    fig = _figure(6.4, 3.0)
    ax = fig.add_subplot()
    ax.plot(ts, rates, marker="." if len(ts) < 60 else None, color="#1f77b4")
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("items/s delivered")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
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
.problems { border: 3px solid #c62828; background: #ffebee; padding: 0.5em 1em; margin: 1em 0; }
.problems h2 { color: #c62828; margin-top: 0.2em; }
.note { color: #666; font-style: italic; }
img { max-width: 100%; border: 1px solid #eee; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(header: list[str], rows: list[list[Any]], left: int = 1) -> str:
    """An HTML table; the first `left` columns are left-aligned text."""
    cls = lambda i: ' class="l"' if i < left else ""  # noqa: E731
    head = "".join(f"<th{cls(i)}>{_e(h)}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{_e(v)}</td>" for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


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
        "links.png": _plot_links(result, directory / "links.png", plan),
        "throughput.png": _plot_throughput(result, directory / "throughput.png"),
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
    if result.cameras:
        rows = [[name, *_camera_counts(c)] for name, c in sorted(result.cameras.items())]
        rows.append(["total", *_camera_counts(result.totals())])
        parts.append(_table(list(_CAMERA_COLUMNS), rows))
    else:
        parts.append('<p class="note">No camera counts recorded.</p>')

    parts.append(f"<h2>End-to-end latency ({len(result.latency_ms)} items)</h2>")
    pct = result.latency_percentiles()
    parts.append(_table([f"{k} (ms)" for k in pct], [[_f(v) for v in pct.values()]], left=0))
    parts.append(_img("latency_cdf.png", plots["latency_cdf.png"], "latency CDF", "No latencies measured."))

    parts.append("<h2>Links: measured vs predicted</h2>")
    if result.links:
        rows = []
        for link in result.links:
            pred = _predicted(link, plan)
            rows.append([link.from_, link.to, f"{link.bytes:,}", _f(link.kb_per_s), _f(pred),
                         _ratio(link.kb_per_s, pred)])
        parts.append(_table(["from", "to", "bytes", "KB/s", "predicted KB/s", "measured/predicted"], rows, left=2))
    parts.append(_img("links.png", plots["links.png"], "bandwidth per link", "No link traffic measured."))

    parts.append("<h2>Throughput</h2>")
    mean_rate, peak_rate = _throughput_stats(result)
    parts.append(_table(["mean items/s", "peak items/s", "samples"],
                        [[_f(mean_rate), _f(peak_rate), len(result.throughput)]], left=0))
    parts.append(_img("throughput.png", plots["throughput.png"], "throughput over time",
                      "No throughput timeline recorded."))

    parts.append("<h2>Tracking accuracy</h2>")
    tr = result.tracking
    if tr is None:
        parts.append('<p class="note">Not evaluated (no ground truth or no predictions).</p>')
    else:
        parts.append(f"<p>{_e(tr.scenario)}, AI City track-1 rules: cameras concatenated into one sequence, "
                     f"IoU ≥ {tr.iou:g}, predicted identities seen in one camera only removed "
                     f"({tr.predictions_removed.get('single_camera', 0)} boxes).</p>")
        parts.append(_table(["IDF1", "IDP", "IDR", "IDTP", "IDFP", "IDFN", "gt boxes", "scored boxes"],
                            [[_pct(tr.idf1), _pct(tr.idp), _pct(tr.idr), tr.idtp, tr.idfp, tr.idfn,
                              tr.gt_boxes, tr.predicted_boxes]], left=0))
        if tr.per_camera:
            rows = [[name, _pct(m.mota), _pct(m.idf1), m.ids, _pct(m.precision), _pct(m.recall), m.frames,
                     m.gt_boxes, m.predicted_boxes] for name, m in tr.per_camera.items()]
            parts.append("<h3>Per camera (each alone, no single-camera filter)</h3>")
            parts.append(_table(["camera", "MOTA", "IDF1", "ID switches", "precision", "recall", "frames",
                                 "gt boxes", "predicted boxes"], rows))
        if tr.cameras_skipped:
            parts.append("<h3>Cameras not scored</h3>")
            parts.append(_table(["camera", "why"], [[k, v] for k, v in tr.cameras_skipped.items()], left=2))

    parts.append("<h2>The plan across tiers</h2>")
    if result.plan_cost_per_hour is not None:
        parts.append(f"<p>Plan cost {_e(_f(result.plan_cost_per_hour, '.4f'))} $/h, predicted accuracy "
                     f"{_e(_f(result.plan_predicted_accuracy, '.3f'))}.</p>")
    parts.append(_img("plan.png", plots["plan.png"], "workers per tier", "No plan given."))
    if plan is not None and plan.workers:
        rows = [[w.location, w.tier, w.hardware, w.operator, w.variant, w.count, _f(w.load), _f(w.capacity),
                 _f(w.cost_per_hour, ".4f")]
                for w in sorted(plan.workers, key=lambda w: (plan.tiers.get(w.location, 0), w.location, w.operator))]
        parts.append(_table(["location", "tier", "hardware", "operator", "variant", "workers", "load items/s",
                             "capacity items/s", "$/h"], rows, left=5))

    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Replay of {_e(result.scenario)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")
    index = directory / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
