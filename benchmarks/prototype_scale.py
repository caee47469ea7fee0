"""The planner on prototype-format directories of a real deployment's size, against an independent model.

Writes instances with jellybean.planner.prototype_instances (100-150 workers over 4 tiers by
default, every worker with its own latencies and per-pair link prices), plans each one with
``make_plan(load_jellybean_inputs(DIR), "optimal", time_limit=60)`` and solves it again with the
independent formulation of tests/planner/independent.py (HiGHS, written from the files and the
documented semantics). Prints one row per instance, whether the two agree, and the medians.

Agreement: when both prove optimality, their $/h must match to 1e-6 relative; when either stops
at its time limit, each one's plan must cost no less than the other's proven bound ("open").

    .venv/bin/python benchmarks/prototype_scale.py                          # seeds 0..4, 100..150 workers
    .venv/bin/python benchmarks/prototype_scale.py --sizes 40,60 --reference-limit 60
    .venv/bin/python benchmarks/prototype_scale.py --tiers 3 --load 0.6 --json out.json
    .venv/bin/python benchmarks/prototype_scale.py --link-spread 0 --site-spread 0   # $/GB per pair of tiers
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "planner"))

from independent import solve_independent  # noqa: E402
from isolation import Isolated, fmt, median  # noqa: E402
from jellybean.errors import JellyBeanError  # noqa: E402
from jellybean.planner.jellybean_format import load_jellybean_inputs  # noqa: E402
from jellybean.planner.model import PlanningModel  # noqa: E402
from jellybean.planner.problem import Problem  # noqa: E402
from jellybean.planner.prototype_instances import generate_prototype_instance, write_instance  # noqa: E402
from jellybean.planner.strategies import make_plan  # noqa: E402

console = Console()
if not console.is_terminal:
    console = Console(width=max(console.width, 240))  # a pipe gets the whole table, numbers never cut
app = typer.Typer(add_completion=False)

RELATIVE = 1e-6


@dataclass
class Row:
    seed: int
    workers: int
    combos: int  # variant combinations meeting the accuracy threshold
    variables: int | None  # the package's model
    integers: int | None
    constraints: int | None
    status: str
    gap: float | None
    cost: float | None  # $/h of the package's plan
    bound: float | None
    seconds: float | None  # wall time of make_plan(..., "optimal")
    ref_columns: int  # the independent single model
    ref_integers: int
    ref_rows: int
    ref_status: str
    ref_cost: float | None
    ref_bound: float | None
    ref_seconds: float
    ref_mips: int
    error: str = ""

    @property
    def agree(self) -> str:
        """'yes' (both optimal, same $/h), 'open' (bounds consistent), 'NO' (a plan beats a proven bound)."""
        if self.cost is None or self.ref_cost is None:
            return "-"
        close = abs(self.cost - self.ref_cost) <= RELATIVE * max(abs(self.ref_cost), 1e-9)
        if self.status == "OPTIMAL" and self.ref_status == "Optimal":
            return "yes" if close else "NO"
        slack = RELATIVE * max(abs(self.ref_cost), 1e-9)
        below_ref = self.ref_bound is not None and self.cost < self.ref_bound - slack
        below_pkg = self.bound is not None and self.ref_cost < self.bound - slack
        if below_ref or below_pkg or (self.status == "OPTIMAL" and self.ref_cost < self.cost - slack) or (
                self.ref_status == "Optimal" and self.cost < self.ref_cost - slack):
            return "NO"
        return "open"


def model_size(problem: Problem) -> tuple[int | None, int | None, int | None]:
    """Variables, integer variables and constraints of the package's model (None if it cannot say)."""
    try:
        solver = PlanningModel(problem).solver
        variables = solver.variables()
        return len(variables), sum(1 for v in variables if v.integer()), solver.NumConstraints()
    except (TypeError, AttributeError) as exc:  # the model's constructor is being reworked elsewhere
        console.log(f"[yellow]model size unavailable: {exc}")
        return None, None, None


def run_one(seed: int, workers: int, tiers: int, load: float, time_limit: float, reference_limit: float,
            link_spread: float, site_spread: float) -> Row:
    instance = generate_prototype_instance(seed, workers, tiers, load=load, link_spread=link_spread,
                                           site_spread=site_spread)
    with tempfile.TemporaryDirectory(prefix="prototype-scale-") as tmp:
        directory = Path(tmp) / f"w{workers}-s{seed}"
        write_instance(directory, instance)
        problem = load_jellybean_inputs(directory)
        nvars, nints, ncons = model_size(problem)
        start = time.perf_counter()
        status, gap, cost, bound, error = "NO PLAN", None, None, None, ""
        try:
            plan = make_plan(problem, "optimal", time_limit=time_limit)
            status, gap, cost = plan.solver.status, plan.solver.gap, plan.cost.total
            bound = getattr(plan.solver, "best_bound", None)
        except JellyBeanError as exc:
            error = str(exc)
        seconds = time.perf_counter() - start
        ref = solve_independent(directory, time_limit=reference_limit)
    if bound is None and cost is not None and gap is not None:
        bound = cost * (1 - gap)  # the gap is relative to the plan's cost
    return Row(seed, workers, instance.combos_meeting, nvars, nints, ncons, status, gap, cost, bound, seconds,
               ref.columns, ref.integers, ref.rows, ref.status, ref.cost, ref.bound, ref.seconds, ref.mips, error)


def _crashed(seed: int, workers: int, tiers: int, load: float, time_limit: float, reference_limit: float,
             link_spread: float, site_spread: float) -> None:
    console.log(f"[red]{workers} workers, seed {seed}: the solver process crashed")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _excess(r: Row) -> float | None:
    """How much dearer the package's plan is than the independent one (relative)."""
    if r.cost is None or r.ref_cost is None:
        return None
    excess = (r.cost - r.ref_cost) / max(abs(r.ref_cost), 1e-9)
    return 0.0 if abs(excess) <= RELATIVE else excess  # no "-0.00%" for solver noise


def _ref_gap(r: Row) -> float | None:
    if r.ref_cost is None or r.ref_bound is None:
        return None
    return max(0.0, r.ref_cost - r.ref_bound) / max(abs(r.ref_cost), 1e-9)


COLUMNS = (("seed", "right"), ("workers", "right"), ("combos", "right"), ("vars (int)", "right"), ("cons", "right"),
           ("status", "left"), ("gap", "right"), ("$/h", "right"), ("seconds", "right"), ("ref cols (int)", "right"),
           ("ref rows", "right"), ("ref status", "left"), ("ref gap", "right"), ("ref $/h", "right"),
           ("ref seconds", "right"), ("ref MIPs", "right"), ("$/h vs ref", "right"), ("agree", "left"))


def _cells(r: Row) -> list[str]:
    return [
        str(r.seed), str(r.workers), str(r.combos), "-" if r.variables is None else f"{r.variables} ({r.integers})",
        fmt(r.constraints, "d"), r.status, _pct(r.gap), fmt(r.cost, ".4f"), fmt(r.seconds, ".1f"),
        f"{r.ref_columns} ({r.ref_integers})", str(r.ref_rows), r.ref_status, _pct(_ref_gap(r)),
        fmt(r.ref_cost, ".4f"), fmt(r.ref_seconds, ".1f"), str(r.ref_mips), _pct(_excess(r)),
        r.agree if r.agree != "NO" else "[bold red]NO",
    ]


def _median_cells(rows: list[Row]) -> list[str]:
    optimal = sum(r.status == "OPTIMAL" for r in rows)
    ref_optimal = sum(r.ref_status == "Optimal" for r in rows)
    agreed = sum(r.agree == "yes" for r in rows)
    cells = [
        "median", fmt(median(r.workers for r in rows), "g"), "", "", "", f"{optimal}/{len(rows)} optimal",
        _pct(median(r.gap for r in rows)), fmt(median(r.cost for r in rows), ".4f"),
        fmt(median(r.seconds for r in rows), ".1f"), "", "", f"{ref_optimal}/{len(rows)} optimal",
        _pct(median(_ref_gap(r) for r in rows)), fmt(median(r.ref_cost for r in rows), ".4f"),
        fmt(median(r.ref_seconds for r in rows), ".1f"), "", _pct(median(_excess(r) for r in rows)),
        f"{agreed}/{len(rows)} yes",
    ]
    return [f"[bold]{c}" if c else c for c in cells]


def results_table(rows: list[Row], title: str) -> Table:
    body = [_cells(r) for r in rows] + ([_median_cells(rows)] if len(rows) > 1 else [])
    table = Table(title=title)
    for j, (name, justify) in enumerate(COLUMNS):
        # As wide as its widest cell, so that a narrow terminal cannot cut a number short.
        width = max([len(name), *(Text.from_markup(cells[j]).cell_len for cells in body)])
        table.add_column(name, justify=justify, min_width=width, no_wrap=True)
    for cells in body:
        table.add_row(*cells)
    return table


def print_whole(table: Table) -> None:
    """Print ``table`` at its natural width, wider than a narrow terminal if need be: rich would
    otherwise squeeze columns and cut numbers short."""
    width = console.measure(table, options=console.options.update_width(10_000)).maximum
    out = console if width <= console.width else Console(width=width, force_terminal=console.is_terminal)
    out.print(table)


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console)


@app.command()
def main(
    sizes: Annotated[str, typer.Option(help="Comma-separated worker counts, one instance each (seeds 0, 1, ...).")]
    = "100,112,125,138,150",
    tiers: Annotated[int, typer.Option(help="Tiers of every instance (2..4).")] = 4,
    load: Annotated[float, typer.Option(help="Share of the fleet's compute the input rates need (generator).")] = 0.45,
    link_spread: Annotated[float, typer.Option(help="Lognormal sigma of each worker pair's $/GB (generator).")] = 0.1,
    site_spread: Annotated[float, typer.Option(
        help="Lognormal sigma of each site's $/GB; 0 with --link-spread 0 prices links per pair of tiers.")] = 0.2,
    time_limit: Annotated[float, typer.Option("--time-limit", help="Seconds for make_plan(..., 'optimal').")] = 60.0,
    reference_limit: Annotated[float, typer.Option(
        "--reference-limit", help="Seconds for the independent formulation.")] = 120.0,
    isolate: Annotated[bool, typer.Option(help="Solve every instance in its own process (survives solver crashes).")] = True,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write every row to this JSON file.")] = None,
) -> None:
    size_list = [int(s) for s in sizes.split(",") if s.strip()]
    runner = Isolated(run_one, _crashed) if isolate else run_one
    rows: list[Row] = []
    console.print(f"[bold]prototype scale[/]: {len(size_list)} instances ({', '.join(map(str, size_list))} workers, "
                  f"{tiers} tiers, load {load:g}, $/GB spread per pair {link_spread:g}, per site {site_spread:g}), planner limit {time_limit:g} s, independent limit {reference_limit:g} s, "
                  f"{os.cpu_count()} CPUs")
    try:
        with _progress() as progress:
            task = progress.add_task("solving", total=len(size_list))
            for seed, workers in enumerate(size_list):
                progress.update(task, description=f"{workers} workers, seed {seed}")
                row = runner(seed, workers, tiers, load, time_limit, reference_limit, link_spread, site_spread)
                if row is not None:
                    rows.append(row)
                    if row.error:
                        console.log(f"[red]{workers} workers, seed {seed}: {row.error}")
                progress.advance(task)
    finally:
        if isinstance(runner, Isolated):
            runner.close()
    print_whole(results_table(rows, f"make_plan optimal ({time_limit:g} s) vs the independent formulation "
                                      f"({reference_limit:g} s)"))
    if json_out is not None:
        json_out.write_text(json.dumps([{**asdict(r), "agree": r.agree} for r in rows], indent=1))


if __name__ == "__main__":
    app()
