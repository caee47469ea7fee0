"""How the exact planner scales: solve time, gap and cost against the greedy baseline.

Builds random instances (jellybean.planner.generate.random_problem: 4 tiers, 6 operators with 6
variants each by default) at several worker counts, solves each with the optimal strategy under a
time limit and with the greedy baseline, and prints one row per instance and the medians per
size. Optionally compares solver backends at one size and breaks the model down by variable and
constraint family.

    .venv/bin/python benchmarks/planner_scale.py                      # 25..300 workers, 3 seeds, 60 s
    .venv/bin/python benchmarks/planner_scale.py --sizes 25,50 --seeds 1 --time-limit 20
    .venv/bin/python benchmarks/planner_scale.py --compare-at 100 --configs HIGHS,SCIP,SCIP:cold
    .venv/bin/python benchmarks/planner_scale.py --sizes 300 --seeds 1 --families --json out.json
"""

from __future__ import annotations

import inspect
import json
import os
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from isolation import Isolated, fmt, median  # noqa: E402
from jellybean.errors import JellyBeanError  # noqa: E402
from jellybean.planner.generate import random_problem  # noqa: E402
from jellybean.planner.highs import HighsModel  # noqa: E402
from jellybean.planner.model import PlanningModel  # noqa: E402
from jellybean.planner.problem import Problem  # noqa: E402
from jellybean.planner.extract import extract_plan  # noqa: E402
from jellybean.planner.solve import solve  # noqa: E402
from jellybean.planner.strategies import make_plan  # noqa: E402

console = Console()
if not console.is_terminal:
    console = Console(width=max(console.width, 150))
app = typer.Typer(add_completion=False)


@dataclass
class Row:
    workers: int
    seed: int
    backend: str
    pools: int
    locations: int
    variables: int
    integers: int
    constraints: int
    seconds: float | None  # wall time of make_plan(..., "optimal"): warm start, model, solve, extraction
    status: str
    gap: float | None
    optimal: float | None  # $/h of the plan found
    bound: float | None
    greedy: float | None
    greedy_error: str = ""
    first_plan_s: float | None = None  # until the solver held its first plan
    root_bound: float | None = None  # the LP relaxation of the full model, $/h

    @property
    def proof_s(self) -> float | None:
        return self.seconds if self.status == "OPTIMAL" else None

    @property
    def root_ratio(self) -> float | None:
        return self.root_bound / self.optimal if self.root_bound is not None and self.optimal else None

    @property
    def ratio(self) -> float | None:
        return self.optimal / self.greedy if self.optimal is not None and self.greedy else None


def model_size(problem: Problem, backend: str) -> tuple[int, int, int, Counter, Counter]:
    """Variables, integer variables and constraints of the model, and both by family."""
    model = PlanningModel(problem, backend=backend)
    family = lambda name: re.split(r"[\[(]", name, maxsplit=1)[0]  # noqa: E731
    variables = model.solver.variables()
    constraints = model.solver.constraints()
    integers = sum(1 for v in variables if v.integer())
    return (
        len(variables), integers, len(constraints),
        Counter(family(v.name()) for v in variables), Counter(family(c.name()) for c in constraints),
    )


def optimal_plan(problem: Problem, time_limit: float, backend: str, warm_start: bool, on_progress=None):
    """make_plan(problem, "optimal"), or the same without the planner's warm start ("cold")."""
    if warm_start or "warm_start" not in inspect.signature(solve).parameters:
        return make_plan(problem, "optimal", time_limit=time_limit, backend=backend, on_progress=on_progress)
    solution = solve(problem, time_limit=time_limit, backend=backend, warm_start=False, on_progress=on_progress)
    return extract_plan(problem, solution, "optimal")


def root_bound(problem: Problem) -> float | None:
    """The LP relaxation of the full model (variants free): what branch-and-bound starts from."""
    highs = HighsModel(PlanningModel(problem).solver)
    highs.relax(True)
    result = highs.solve()
    return result.objective if result.status == "OPTIMAL" else None


def run_one(workers: int, seed: int, time_limit: float, config: str, greedy: bool = True) -> tuple[Row, Counter, Counter]:
    """One instance: model size, greedy and optimal plans. ``config`` is BACKEND or BACKEND:cold."""
    backend, _, mode = config.partition(":")
    problem = random_problem(seed, workers=workers)
    nvars, nints, ncons, var_families, con_families = model_size(problem, backend)
    greedy_cost, greedy_error = None, ""
    if greedy:
        try:
            greedy_cost = make_plan(problem, "greedy").cost.total
        except JellyBeanError as exc:
            greedy_error = str(exc)
    start = time.perf_counter()
    first: list[float] = []

    def on_progress(event) -> None:
        if event.incumbent is not None and not first:
            first.append(time.perf_counter() - start)

    try:
        plan = optimal_plan(problem, time_limit, backend, warm_start=mode != "cold", on_progress=on_progress)
        status, gap, cost, bound = plan.solver.status, plan.solver.gap, plan.cost.total, plan.solver.best_bound
    except JellyBeanError as exc:
        status, gap, cost, bound = "NO PLAN", None, None, None
        greedy_error = greedy_error or str(exc)
    seconds = time.perf_counter() - start
    row = Row(workers, seed, config, len(problem.pools), len(problem.locations), nvars, nints, ncons, seconds,
              status, gap, cost, bound, greedy_cost, greedy_error, first[0] if first else None, root_bound(problem))
    return row, var_families, con_families


def _crashed(workers: int, seed: int, time_limit: float, config: str, greedy: bool = True):
    console.log(f"[red]{workers} workers, seed {seed}, {config}: the solver process crashed")
    row = Row(workers, seed, config, 0, 0, 0, 0, 0, None, "CRASH", None, None, None, None)
    return row, Counter(), Counter()


def results_table(rows: list[Row], title: str, medians: bool = True) -> Table:
    table = Table(title=title, show_lines=False)
    for name, justify in (("workers", "right"), ("seed", "right"), ("config", "left"), ("vars (int)", "right"),
                          ("cons", "right"), ("first plan s", "right"), ("solve s", "right"), ("proof s", "right"),
                          ("status", "left"), ("gap", "right"), ("optimal $/h", "right"), ("root bound", "right"),
                          ("root/plan", "right"), ("greedy $/h", "right"), ("opt/greedy", "right")):
        table.add_column(name, justify=justify, min_width=len(name))
    by_size: dict[tuple[int, str], list[Row]] = {}
    for r in rows:
        by_size.setdefault((r.workers, r.backend), []).append(r)
    for (size, backend), group in by_size.items():
        for r in group:
            table.add_row(
                str(r.workers), str(r.seed), r.backend, f"{r.variables} ({r.integers})", str(r.constraints),
                fmt(r.first_plan_s, ".1f"), fmt(r.seconds, ".1f"), fmt(r.proof_s, ".1f"), r.status,
                fmt(None if r.gap is None else 100 * r.gap, ".2f") + ("%" if r.gap is not None else ""),
                fmt(r.optimal, ".3f"), fmt(r.root_bound, ".3f"), fmt(r.root_ratio, ".3f"),
                fmt(r.greedy, ".3f") if r.greedy is not None else "fails", fmt(r.ratio, ".3f"),
            )
        if medians and len(group) > 1:
            gap = median(r.gap for r in group)
            optimal_count = sum(r.status == "OPTIMAL" for r in group)
            table.add_row(
                f"[bold]{size}", "[bold]median", backend, "", "", f"[bold]{fmt(median(r.first_plan_s for r in group), '.1f')}",
                f"[bold]{fmt(median(r.seconds for r in group), '.1f')}", f"[bold]{fmt(median(r.proof_s for r in group), '.1f')}",
                f"[bold]{optimal_count}/{len(group)} optimal", f"[bold]{fmt(None if gap is None else 100 * gap, '.2f')}" + ("%" if gap is not None else ""),
                f"[bold]{fmt(median(r.optimal for r in group), '.3f')}", "",
                f"[bold]{fmt(median(r.root_ratio for r in group), '.3f')}", f"[bold]{fmt(median(r.greedy for r in group), '.3f')}",
                f"[bold]{fmt(median(r.ratio for r in group), '.3f')}", end_section=True,
            )
    return table


def families_table(var_families: Counter, con_families: Counter, title: str) -> Table:
    table = Table(title=title)
    table.add_column("family")
    table.add_column("variables", justify="right")
    table.add_column("constraints", justify="right")
    for name in sorted(set(var_families) | set(con_families), key=lambda k: -(var_families[k] + con_families[k])):
        table.add_row(name, str(var_families.get(name, "")), str(con_families.get(name, "")))
    return table


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console)


@app.command()
def main(
    sizes: Annotated[str, typer.Option(help="Comma-separated worker counts.")] = "25,50,100,200,300",
    seeds: Annotated[int, typer.Option(help="Instances (seeds 0..N-1) per size.")] = 3,
    time_limit: Annotated[float, typer.Option("--time-limit", help="Seconds for each optimal solve.")] = 60.0,
    backend: Annotated[str, typer.Option(help="Solver of the main run (HIGHS, SCIP, CBC).")] = "HIGHS",
    compare_at: Annotated[int, typer.Option("--compare-at", help="Size at which to compare --configs (0: skip).")] = 50,
    configs: Annotated[str, typer.Option(
        help="Configurations to compare: BACKEND runs make_plan as is, BACKEND:cold without the warm start."
    )] = "HIGHS,SCIP",
    families: Annotated[bool, typer.Option(help="Break the largest model down by variable and constraint family.")] = True,
    isolate: Annotated[bool, typer.Option(help="Solve every instance in its own process (survives solver crashes).")] = True,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write every row to this JSON file.")] = None,
) -> None:
    size_list = [int(s) for s in sizes.split(",") if s.strip()]
    config_list = [c.strip().upper().replace(":COLD", ":cold") for c in configs.split(",") if c.strip()] if compare_at else []
    backend = backend.upper()
    runner = Isolated(run_one, _crashed) if isolate else run_one
    rows: list[Row] = []
    compare_rows: list[Row] = []
    largest: tuple[int, Counter, Counter] | None = None
    jobs = len(size_list) * seeds + len(config_list) * seeds
    console.print(f"[bold]planner scale[/]: sizes {size_list}, {seeds} seed(s) each, time limit {time_limit:g} s, "
                  f"backend {backend}, {os.cpu_count()} CPUs"
                  + (f"; {', '.join(config_list)} at {compare_at} workers" if config_list else ""))
    try:
        with _progress() as progress:
            task = progress.add_task("solving", total=jobs)
            for size in size_list:
                for seed in range(seeds):
                    progress.update(task, description=f"{size} workers, seed {seed}, {backend}")
                    row, vf, cf = runner(size, seed, time_limit, backend)
                    rows.append(row)
                    if vf and (largest is None or size >= largest[0]):
                        largest = (size, vf, cf)
                    progress.advance(task)
            for config in config_list:
                for seed in range(seeds):
                    progress.update(task, description=f"{compare_at} workers, seed {seed}, {config}")
                    # the main run may have this one already: reuse it rather than solve it again
                    done = next((r for r in rows if (r.workers, r.seed, r.backend) == (compare_at, seed, config)), None)
                    compare_rows.append(done or runner(compare_at, seed, time_limit, config, greedy=False)[0])
                    progress.advance(task)
    finally:
        if isinstance(runner, Isolated):
            runner.close()
    console.print(results_table(rows, f"optimal ({backend}, {time_limit:g} s limit) vs greedy"))
    if compare_rows:
        greedy = {(r.workers, r.seed): r.greedy for r in rows}
        for r in compare_rows:
            r.greedy = r.greedy if r.greedy is not None else greedy.get((r.workers, r.seed))
        console.print(results_table(compare_rows, f"configurations at {compare_at} workers ({time_limit:g} s limit)"))
    if families and largest is not None:
        console.print(families_table(largest[1], largest[2], f"model of {largest[0]} workers (last seed), by family"))
    if json_out is not None:
        json_out.write_text(json.dumps({"rows": [asdict(r) for r in rows], "compare": [asdict(r) for r in compare_rows]},
                                       indent=1))


if __name__ == "__main__":
    app()
