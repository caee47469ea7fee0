"""`jellybean validate FILE...`: check specs alone and, given together, against each other."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from jellybean.cli.app import app
from jellybean.tables import stdout_console
from jellybean.errors import SpecError
from jellybean.spec.loader import validate_files

console = stdout_console()


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Workflow, model-zoo, hardware, infrastructure or plan YAML files, "
                                                     "or a prototype optimizer input directory (as plan --jellybean-inputs "
                                                     "reads).")],
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print {files: [{path, kind, ok}], problems: [...]} on stdout; exit 2 if any problem.")] = False,
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
    # A file that parsed alone but that a problem names (a reference to another file) is not ok.
    named = {path for path, _ in results if any(p.startswith(f"{path}:") or f" {path}" in p for p in problems)}
    if as_json:
        files_out = [{"path": str(path), "kind": kind, "ok": path not in named} for path, kind in results]
        typer.echo(json.dumps({"files": files_out, "problems": list(problems)}, indent=2))
        if problems:
            raise typer.Exit(2)
        return
    for path, kind in results:
        if path not in named:
            console.print(f"[green]ok[/]  {escape(str(path))} ({kind})", highlight=False, soft_wrap=True)
    if problems:
        raise SpecError(problems)
