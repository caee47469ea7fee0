"""`jellybean validate FILE...`: check specs alone and, given together, against each other."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from jellybean.cli.main import app
from jellybean.errors import SpecError
from jellybean.spec.loader import validate_files

console = Console()


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Workflow, model-zoo, hardware, infrastructure or plan YAML files.")],
) -> None:
    """Check every file and report each problem as `file: path: what is wrong, what to do`."""
    results, problems = validate_files(files)
    for path, kind in results:
        console.print(f"[green]ok[/]  {path} ({kind})", highlight=False)
    if problems:
        raise SpecError(problems)
