"""`jellybean validate FILE...`: check specs alone and, given together, against each other."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from jellybean.cli.main import app
from jellybean.errors import SpecError
from jellybean.spec.loader import validate_files

console = Console()


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Workflow, model-zoo, hardware, infrastructure or plan YAML files, "
                                                     "or a prototype optimizer input directory (as plan --jellybean-inputs "
                                                     "reads).")],
) -> None:
    """Check every file and report each problem as `file: path: what is wrong, what to do`."""
    directories = [f for f in files if f.is_dir()]
    results, problems = validate_files([f for f in files if not f.is_dir()])
    for directory in directories:
        from jellybean.planner.jellybean_format import load_jellybean_inputs

        try:
            load_jellybean_inputs(directory)
        except SpecError as exc:
            problems.extend(exc.problems)
        else:
            results.append((directory, "jellybean inputs"))
    for path, kind in results:
        console.print(f"[green]ok[/]  {escape(str(path))} ({kind})", highlight=False)
    if problems:
        raise SpecError(problems)
