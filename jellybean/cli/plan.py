"""`jellybean plan` and `jellybean explain`."""

from __future__ import annotations

import json
import threading
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from jellybean.cli.app import app
from jellybean.tables import stdout_console
from jellybean.cli.plan_report import ReportDir, check_compare, plan_problem, write_report
from jellybean.errors import JellyBeanError
from jellybean.planner.highs import Progress as SolveProgress
from jellybean.planner.strategies import STRATEGIES

console = stdout_console()
err_console = Console(stderr=True)

BACKENDS = ("HIGHS", "SCIP", "CBC")
# Shown as choices in --help, and refused by typer with the list of choices.
Strategy = Enum("Strategy", {name: name for name in STRATEGIES}, type=str)
Backend = Enum("Backend", {name: name for name in BACKENDS}, type=str)


def _solving(label: str, time_limit: float | None, quiet: bool):
    """A bar over the time limit, on stderr, with the best plan, the proven bound and the gap so far."""
    progress = Progress(
        SpinnerColumn(), TextColumn(label), BarColumn(), TimeElapsedColumn(), TextColumn("{task.fields[state]}"),
        console=err_console, transient=True, disable=quiet or not err_console.is_terminal,
    )
    task = progress.add_task(label, total=time_limit, state="")
    stop = threading.Event()

    def tick() -> None:
        start = time.monotonic()
        while not stop.wait(0.1):
            progress.update(task, completed=min(time.monotonic() - start, time_limit or 0))

    def on_progress(event: SolveProgress) -> None:
        parts = [event.stage] if event.stage else []
        if event.incumbent is not None:
            parts.append(f"best {event.incumbent:.4f} $/h")
        if event.bound is not None:
            parts.append(f"bound {event.bound:.4f}")
        if event.gap is not None:
            parts.append(f"gap {event.gap:.2%}")
        progress.update(task, state="  ".join(parts))

    class _Ctx:
        def __enter__(self):
            progress.start()
            threading.Thread(target=tick, daemon=True).start()
            return on_progress

        def __exit__(self, *exc):
            stop.set()
            progress.stop()
            return False

    return _Ctx()


# A planner must answer: without a limit a hard instance would run for hours.
DEFAULT_TIME_LIMIT_S = 60.0

CompareWith = Annotated[Optional[Strategy], typer.Option(
    "--compare", help="With --report: plan again with this strategy and show the two plans side by side.")]


MixOption = Annotated[Optional[bool], typer.Option(
    "--mix/--no-mix", help="Let the optimal plan run several variants of an operator, each on its own workers "
                           "with a share of the items (accuracy is the traffic-weighted mix), where that is cheaper "
                           "than one variant per operator. Default: on for -w/-z/-i (skipped, with a note in the plan, "
                           "past 512 variant combinations; --mix refuses them instead), off for --jellybean-inputs, "
                           "whose zoos are large and whose solve has its own decomposition.")]


def _planner(problem, inputs: dict[str, str], time_limit: float, backend: str, quiet: bool,
             mix: bool | None = False):
    """strategy -> the plan of `problem` with it, behind a progress bar."""
    from jellybean.planner.strategies import make_plan

    def make(strategy: str):
        with _solving(f"solving ({strategy})", time_limit, quiet=quiet) as on_progress:
            return make_plan(problem, strategy, time_limit=time_limit, backend=backend.upper(), inputs=inputs,
                             on_progress=on_progress, mix=mix)

    return make


@app.command()
def plan(
    workflow: Annotated[Optional[Path], typer.Option("-w", "--workflow", help="Workflow YAML.")] = None,
    zoo: Annotated[Optional[Path], typer.Option("-z", "--zoo", help="Model-zoo manifest YAML.")] = None,
    infrastructure: Annotated[Optional[Path], typer.Option("-i", "--infrastructure", help="Infrastructure YAML.")] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write the plan here (YAML).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON on stdout (the plan file's layout, "
                                                         "whatever the input format).")] = False,
    prototype_json: Annotated[bool, typer.Option(
        "--prototype-json", help="With --jellybean-inputs: print the plan as the reference prototype's optimizer does "
                                 "(model_assignment, worker_assignment, costs), to compare with it.")] = False,
    time_limit: Annotated[float, typer.Option(
        "--time-limit", min=0.01, help="Seconds the solver may take; at the limit the best plan found is returned "
                                       "with its proven gap, marked not proven optimal.")] = DEFAULT_TIME_LIMIT_S,
    strategy: Annotated[Strategy, typer.Option("--strategy", help="optimal, or a baseline to compare with.")] = "optimal",
    jellybean_inputs: Annotated[Optional[Path], typer.Option("--jellybean-inputs", help="The reference prototype's optimizer input directory.")] = None,
    backend: Annotated[Backend, typer.Option("--backend", case_sensitive=False,
                                             help="MIP solver: HIGHS (highspy), SCIP or CBC (through OR-Tools).")] = "HIGHS",
    report: ReportDir = None,
    compare: CompareWith = None,
    mix: MixOption = None,
) -> None:
    """Choose variants, worker counts and routes at the least $/h that meets the SLOs."""
    from jellybean.planner.approximation import compare_exact
    from jellybean.planner.strategies import make_plan
    from jellybean.planner.render import plan_json, render_summary, write_plan

    strategy, backend = Strategy(strategy).value, Backend(backend).value
    check_compare(compare, report)
    if prototype_json and (jellybean_inputs is None or as_json):
        raise JellyBeanError("--prototype-json prints a plan for --jellybean-inputs DIR in the prototype's layout; "
                             "use it with --jellybean-inputs and without --json")
    if jellybean_inputs is not None:
        if any(x is not None for x in (workflow, zoo, infrastructure)):
            raise JellyBeanError("--jellybean-inputs: give either a prototype input directory or -w/-z/-i, not both")
        from jellybean.planner.jellybean_format import load_jellybean_inputs

        problem = load_jellybean_inputs(jellybean_inputs)
        inputs = {"jellybean_inputs": str(jellybean_inputs)}
        mixing = bool(mix)  # off unless asked for
    else:
        missing = [flag for flag, v in (("-w/--workflow", workflow), ("-z/--zoo", zoo), ("-i/--infrastructure", infrastructure)) if v is None]
        if missing:
            raise JellyBeanError(f"missing {', '.join(missing)}; give a workflow, a model zoo and an infrastructure "
                                 "(or --jellybean-inputs DIR)")
        from jellybean.planner.build import build_problem, load_inputs

        loaded = load_inputs(workflow, zoo, infrastructure)
        problem = build_problem(loaded)
        inputs = loaded.paths
        mixing = None if mix is None else mix  # None: where the combinations are few enough

    with _solving(f"solving ({strategy})", time_limit, quiet=as_json or prototype_json) as on_progress:
        result = make_plan(problem, strategy, time_limit=time_limit, backend=backend.upper(), inputs=inputs,
                           on_progress=on_progress, mix=mixing)
        # With approximate variants in the plan, the same inputs without them: what approximation saves.
        result = compare_exact(problem, result, lambda p: make_plan(p, strategy, time_limit=time_limit,
                                                                    backend=backend.upper(), inputs=inputs, mix=mixing))
    if output is not None:
        write_plan(result, output)
    index = write_report(result, report, compare and Strategy(compare).value,
                         _planner(problem, inputs, time_limit, backend, quiet=as_json or prototype_json, mix=mixing))
    if prototype_json:
        from jellybean.planner.jellybean_format import jellybean_json

        typer.echo(json.dumps(jellybean_json(result, problem), indent=2))
        return
    if as_json:
        typer.echo(plan_json(result))
        return
    render_summary(result, console)
    if output is not None:
        console.print(f"plan written to {output}", highlight=False)
    if index is not None:
        console.print(f"report written to {index}", highlight=False)


@app.command()
def explain(
    plan_file: Annotated[Path, typer.Argument(metavar="PLAN", help="A plan YAML written by `jellybean plan -o`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON on stdout, as `plan --json` does.")] = False,
    report: ReportDir = None,
    compare: CompareWith = None,
    workflow: Annotated[Optional[Path], typer.Option(
        "-w", "--workflow", help="With --compare: the workflow, when not where the plan's inputs say.")] = None,
    zoo: Annotated[Optional[Path], typer.Option("-z", "--zoo", help="With --compare: the model-zoo manifest YAML.")] = None,
    infrastructure: Annotated[Optional[Path], typer.Option(
        "-i", "--infrastructure", help="With --compare: the infrastructure.")] = None,
) -> None:
    """Show a plan per tier: workers, variants, load against capacity, $/h, links, binding constraints."""
    from jellybean.planner.render import plan_json, read_plan, render_explain

    check_compare(compare, report)
    plan = read_plan(plan_file)
    if compare is not None:   # the plan's own inputs, planned again with the other strategy
        problem, inputs = plan_problem(plan, plan_file, {"workflow": workflow, "zoo": zoo, "infrastructure": infrastructure})
        backend = plan.solver.backend if plan.solver.backend in BACKENDS else "HIGHS"
        make = _planner(problem, inputs, DEFAULT_TIME_LIMIT_S, backend, quiet=as_json)
    else:
        make = None
    index = write_report(plan, report, compare and Strategy(compare).value, make)
    if as_json:
        typer.echo(plan_json(plan))
        return
    render_explain(plan, console)
    if index is not None:
        console.print(f"report written to {index}", highlight=False)
