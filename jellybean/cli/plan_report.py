"""`--report DIR` and `--compare STRATEGY` of `jellybean plan` and `jellybean explain`: the options
and the one step both commands call. The page itself is jellybean/planner/report_html.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from jellybean.errors import InfeasibleError, SpecError
from jellybean.planner.problem import Problem
from jellybean.spec.plan import Plan

ReportDir = Annotated[Optional[Path], typer.Option(
    "--report", metavar="DIR", help="Also write an HTML report into DIR (index.html and its PNGs): sites by tier, "
                                    "links' planned traffic against bandwidth, workers per site, cost per tier, "
                                    "binding constraints.")]


def check_compare(compare: str | None, report: Path | None) -> None:
    if compare is not None and report is None:
        raise typer.BadParameter("puts a second plan beside this one in the report; give --report DIR too",
                                 param_hint="'--compare'")


def plan_problem(plan: Plan, plan_file: Path, overrides: dict[str, Path | None]) -> tuple[Problem, dict[str, str]]:
    """The problem a plan file was made from, through the inputs it names (relative to itself), and
    the paths of those inputs from here."""
    named = plan.inputs.get("jellybean_inputs")
    if named and not any(overrides.values()):
        from jellybean.planner.jellybean_format import load_jellybean_inputs

        found = next((c for c in (plan_file.parent / named, Path(named)) if c.is_dir()), None)
        if found is None:
            raise SpecError([f"{plan_file}: inputs.jellybean_inputs: the directory '{named}' was not found"])
        return load_jellybean_inputs(found), {"jellybean_inputs": str(found)}
    from jellybean.agents.deployment import resolve_inputs
    from jellybean.planner.build import build_problem

    inputs = resolve_inputs(plan, plan_file, overrides)
    return build_problem(inputs), dict(inputs.paths)


def write_report(plan: Plan, report: Path | None, compare: str | None,
                 make: Callable[[str], Plan] | None) -> Path | None:
    """Write the report when asked; with `compare`, plan again with that strategy through `make` and
    put it beside `plan` (also written as DIR/<strategy>-plan.yaml). A baseline that finds
    no plan is said so in the report and on stderr; the plan's own report is still written.
    Returns the path of index.html."""
    if report is None:
        return None
    from jellybean.planner.render import write_plan
    from jellybean.planner.report_html import write_plan_report

    other, note = None, None
    if compare is not None:
        try:
            other = make(compare)
        except InfeasibleError as exc:  # a finding about the baseline; bad inputs or a solver failure still stop
            note = f"--compare {compare}: no plan: {exc}"
            Console(stderr=True).print(f"[yellow]warning:[/] {escape(note)}", highlight=False)
        else:
            write_plan(other, report / f"{compare}-plan.yaml")
    return write_plan_report(plan, report, compare=other, compare_note=note)
