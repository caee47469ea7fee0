"""`jellybean simulate`: the adapt policies over a load trace, at scale, without agents."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from jellybean.cli.app import app
from jellybean.errors import JellyBeanError
from jellybean.tables import fit, stdout_console

console = stdout_console()
err_console = Console(stderr=True)

POLICY_CHOICES = ("static", "hardware", "loki", "all")
SERIES_POINTS = 480  # points per series in --json and the plots: bins of the per-step figures
SPARK = "▁▂▃▄▅▆▇█"


def _finite(name: str, value: float | None, positive: bool = True) -> None:
    if value is not None and not (math.isfinite(value) and (value > 0 or (not positive and value >= 0))):
        raise JellyBeanError(f"{name} {value!r}: give a finite number{' > 0' if positive else ' ≥ 0'}")


def policies_of(given: list[str] | None) -> list[str]:
    """--policy values in order, 'all' for the three; unknown names refused."""
    names: list[str] = []
    for raw in given or ["all"]:
        for name in (p.strip().lower() for p in raw.split(",")):
            if name not in POLICY_CHOICES:
                raise JellyBeanError(f"--policy '{name}' is not one of {', '.join(POLICY_CHOICES)}")
            for p in (("static", "hardware", "loki") if name == "all" else (name,)):
                if p not in names:
                    names.append(p)
    return names


def binned(run, points: int = SERIES_POINTS) -> dict[str, list]:
    """The per-step series averaged over bins (frames/s stay frames/s; accuracy and latency are
    weighted by what was served; the phase is the bin's most frequent)."""
    n = len(run.t)
    size = max(1, math.ceil(n / points))
    out: dict[str, list] = {k: [] for k in ("t", "offered", "served", "late", "dropped", "accuracy", "cost",
                                            "latency_ms", "phase")}
    for i in range(0, n, size):
        j = min(n, i + size)
        k = j - i
        done = [run.served[x] + run.late[x] for x in range(i, j)]
        total = sum(done)
        out["t"].append(run.t[i])
        for key in ("offered", "served", "late", "dropped", "cost"):
            out[key].append(sum(getattr(run, key)[i:j]) / k)
        for key in ("accuracy", "latency_ms"):
            values = getattr(run, key)
            out[key].append(sum(values[x] * done[x - i] for x in range(i, j) if done[x - i] > 0) / total
                            if total > 0 else None)
        phases = run.phase[i:j]
        out["phase"].append(max(set(phases), key=phases.count))
    return out


def _spark(values: list, top: float | None = None, bottom: float = 0.0) -> str:
    real = [v for v in values if v is not None and math.isfinite(v)]
    if not real:
        return " " * len(values)
    hi = top if top is not None else max(real)
    span = hi - bottom
    chars = []
    for v in values:
        if v is None or not math.isfinite(v):
            chars.append(" ")
        elif span <= 0:
            chars.append(SPARK[0])
        else:
            chars.append(SPARK[min(len(SPARK) - 1, max(0, int((v - bottom) / span * (len(SPARK) - 1) + 0.5)))])
    return "".join(chars)


def render(runs: list, scenario, trace_path: str, out: Console) -> None:
    table = Table(title=f"{len(runs)} polic{'y' if len(runs) == 1 else 'ies'} over {trace_path}, "
                        f"{scenario.cameras} cameras", title_justify="left")
    for header in ("policy", "SLO violations", "of which dropped", "mean accuracy", "mean $/h", "$ per 1000 frames",
                   "mean latency", "decisions (solved)", "decision median"):
        table.add_column(header, justify="left" if header == "policy" else "right")
    for r in runs:
        t = r.totals
        table.add_row(
            r.policy, f"{100 * t['violations']:.2f} %",
            f"{100 * t['frames_dropped'] / t['frames_offered']:.2f} %" if t["frames_offered"] else "-",
            f"{t['mean_accuracy']:.3f}" if t["mean_accuracy"] is not None else "-",
            f"{t['mean_cost_per_hour']:.4f}",
            f"{t['cost_per_1000_frames_on_time']:.4f}" if t["cost_per_1000_frames_on_time"] is not None else "-",
            f"{t['mean_latency_ms']:.0f} ms" if t["mean_latency_ms"] is not None else "-",
            f"{t['decisions']} ({t['solves']})",
            f"{1000 * t['decision_seconds_median']:.1f} ms" if t["decision_seconds_median"] is not None else "-")
    out.print(fit(table))
    width = max(20, min(100, out.width - 22))
    series = {r.policy: binned(r, width) for r in runs}
    first = next(iter(series.values()))
    end = runs[0].t[-1] + runs[0].step_s if runs[0].t else 0.0
    peak = max((max(s["offered"]) for s in series.values() if s["offered"]), default=0.0)
    cost_top = max((max(s["cost"]) for s in series.values() if s["cost"]), default=0.0)
    out.print(f"\nover time (0 … {end:,.0f} s, one column ≈ {end / max(1, len(first['t'])):,.0f} s; "
              f"frames/s up to {peak:,.1f}, $/h up to {cost_top:,.2f}, accuracy 0 … 1):", highlight=False)
    out.print(f"  {'offered':<18} {_spark(first['offered'], peak)}", highlight=False)
    for name, s in series.items():
        served = [a + b for a, b in zip(s["served"], s["late"])]
        bad = [a + b for a, b in zip(s["late"], s["dropped"])]
        out.print(f"  {name + ' served':<18} {_spark(served, peak)}", highlight=False)
        out.print(f"  {name + ' late+drop':<18} {_spark(bad, peak)}", highlight=False)
        out.print(f"  {name + ' accuracy':<18} {_spark(s['accuracy'], 1.0)}", highlight=False)
        out.print(f"  {name + ' $/h':<18} {_spark(s['cost'], cost_top)}", highlight=False)


def run_json(run) -> dict:
    return {**run.totals, "series": binned(run), "decisions": [d for d in run.decisions if d["solved"]]}


def write_report(directory: Path, runs: list, scenario, trace_path: str) -> Path:
    """index.html with the summary table and load.png, accuracy.png, cost.png, violations.png."""
    from matplotlib.figure import Figure

    from jellybean.page_style import CSS

    directory.mkdir(parents=True, exist_ok=True)
    series = {r.policy: binned(r, 1000) for r in runs}
    colours = {"static": "#757575", "hardware": "#ef6c00", "loki": "#1565c0"}

    def figure(name: str, ylabel: str, draw) -> None:
        fig = Figure(figsize=(7.2, 3.0), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        draw(ax)
        ax.set_xlabel("simulated time (s)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.savefig(directory / name)

    def load(ax) -> None:
        first = next(iter(series.values()))
        ax.plot(first["t"], first["offered"], color="black", linewidth=1.2, label="offered")
        for p, s in series.items():
            ax.plot(s["t"], [a + b for a, b in zip(s["served"], s["late"])], color=colours.get(p), label=f"{p} served")
        ax.set_ylim(bottom=0)

    def per(key: str, transform=lambda s, k: s[k]):
        def draw(ax) -> None:
            for p, s in series.items():
                ax.plot(s["t"], [math.nan if v is None else v for v in transform(s, key)], color=colours.get(p),
                        label=p)
            ax.set_ylim(bottom=0)
        return draw

    figure("load.png", "frames/s", load)
    figure("accuracy.png", "accuracy served (zoo product)", per("accuracy"))
    figure("cost.png", "$/h", per("cost"))
    figure("violations.png", "late + dropped frames/s",
           per("x", lambda s, _: [a + b for a, b in zip(s["late"], s["dropped"])]))
    rows = "".join(
        f"<tr><td class=l>{html.escape(r.policy)}</td><td>{100 * r.totals['violations']:.2f} %</td>"
        f"<td>{r.totals['mean_accuracy'] or 0:.3f}</td><td>{r.totals['mean_cost_per_hour']:.4f}</td>"
        f"<td>{r.totals['mean_latency_ms'] or 0:.0f} ms</td><td>{r.totals['decisions']} ({r.totals['solves']})</td></tr>"
        for r in runs)
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>simulate</title><style>{CSS}</style></head><body>"
            f"<h1>Simulation: {html.escape(trace_path)}, {scenario.cameras} cameras</h1>"
            "<table><tr><th class=l>policy</th><th>SLO violations</th><th>mean accuracy</th><th>mean $/h</th>"
            f"<th>mean latency</th><th>decisions (solved)</th></tr>{rows}</table>"
            + "".join(f"<p><img src={n} alt='{n}'></p>" for n in ("load.png", "accuracy.png", "cost.png",
                                                                   "violations.png"))
            + "</body></html>")
    index = directory / "index.html"
    index.write_text(page)
    return index


@app.command()
def simulate(
    workflow: Annotated[Path, typer.Option("-w", "--workflow", help="Workflow YAML (with slo.latency_ms).")],
    zoo: Annotated[Path, typer.Option("-z", "--zoo", help="Model-zoo manifest YAML.")],
    infrastructure: Annotated[Path, typer.Option("-i", "--infrastructure", help="Infrastructure YAML.")],
    trace: Annotated[Path, typer.Option("--trace", help="Load trace CSV: `t,multiplier` or `t,cameras` (as replay).")],
    policy: Annotated[Optional[list[str]], typer.Option(
        "--policy", help="static, hardware, loki, or all (the default); repeat to compare side by side.")] = None,
    period: Annotated[float, typer.Option("--period", help="Simulated seconds between decisions.")] = 5.0,
    startup_s: Annotated[float, typer.Option(
        "--startup-s", help="Seconds before a new elastic (cloud-tier) worker is usable: a VM's boot.")] = 60.0,
    fixed_hardware: Annotated[bool, typer.Option(
        "--fixed-hardware", help="No elastic workers beyond those the plan runs.")] = False,
    cameras: Annotated[Optional[int], typer.Option(
        "--cameras", help="Scale the infrastructure's cameras to N in all (each site in proportion) and plan for "
                          "them.")] = None,
    step: Annotated[float, typer.Option("--step", help="Simulated seconds per step.")] = 1.0,
    stretch: Annotated[float, typer.Option(
        "--stretch", help="Simulated seconds per second of the trace (1800 makes the 48 s diurnal trace a day).")] = 1.0,
    duration: Annotated[Optional[float], typer.Option(
        "--duration", help="Simulated seconds (default: the trace's length, its last row held as long as the one "
                           "before).")] = None,
    relative_cameras: Annotated[bool, typer.Option(
        "--relative-cameras", help="Read a `cameras` trace as a share of its largest value (4 of 4 = all cameras).")] = False,
    deadlines: Annotated[bool, typer.Option(
        "--deadlines/--no-deadlines", help="Drop items that would miss slo.latency_ms at the head of a queue, as "
                                           "`deploy --deadlines` agents do (otherwise they finish late).")] = True,
    reserve_downstream: Annotated[bool, typer.Option(
        "--reserve-downstream/--no-reserve-downstream",
        help="With deadlines, keep the time the operators after an item's operator need (as the agents do); "
             "without, only the operator's own finish counts.")] = True,
    time_limit: Annotated[float, typer.Option("--time-limit", help="Seconds the planner may take.")] = 60.0,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write index.html and PNG plots here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print totals, binned series and decisions as JSON.")] = False,
) -> None:
    """Simulate the adapt policies (static, hardware, loki) against a load trace, at any scale."""
    from jellybean.adapt.runtime import AdaptOptions
    from jellybean.adapt.simulate import SimSettings, prepare, simulate as run_policy, trace_duration
    from jellybean.planner.build import load_inputs
    from jellybean.replay.trace import read_trace

    names = policies_of(policy)
    for name, value, positive in (("--period", period, True), ("--startup-s", startup_s, False),
                                  ("--step", step, True), ("--stretch", stretch, True),
                                  ("--duration", duration, True), ("--time-limit", time_limit, True)):
        _finite(name, value, positive)
    if cameras is not None and cameras < 1:
        raise JellyBeanError(f"--cameras {cameras}: give at least 1")
    load = read_trace(trace)
    settings = SimSettings(step_s=step, stretch=stretch, duration_s=duration, relative_cameras=relative_cameras,
                           deadlines=deadlines, reserve_downstream=reserve_downstream)
    if load.mode == "cameras" and cameras is not None and not relative_cameras and max(load.values) < cameras:
        err_console.print(f"note: {trace} switches at most {max(load.values):g} of {cameras} cameras on; "
                          "--relative-cameras reads it as a share", highlight=False)
    scenario = prepare(load_inputs(workflow, zoo, infrastructure), cameras=cameras, time_limit=time_limit)
    total = trace_duration(load, settings)
    runs = []
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[at]}"),
                        TimeElapsedColumn(), console=err_console, transient=True,
                        disable=as_json or not err_console.is_terminal)
    with progress:
        for name in names:
            task = progress.add_task(f"simulating {name}", total=total, at="")
            options = AdaptOptions(policy=name, period_s=period, startup_s=startup_s, elastic=not fixed_hardware)
            runs.append(run_policy(scenario, load, options, settings,
                                   progress=lambda done, _, task=task: progress.update(
                                       task, completed=done, at=f"{done:,.0f} / {total:,.0f} s")))
    index = write_report(report, runs, scenario, str(trace)) if report is not None else None
    if as_json:
        typer.echo(json.dumps({
            "trace": str(trace), "cameras": scenario.cameras, "plan_cost_per_hour": scenario.plan_cost,
            "deadline_ms": 1000 * scenario.deadline_s, "duration_s": total, "step_s": step, "period_s": period,
            "runs": [run_json(r) for r in runs]}, allow_nan=False))
        return
    render(runs, scenario, str(trace), console)
    if index is not None:
        console.print(f"report written to {index}", highlight=False)

