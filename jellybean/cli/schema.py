"""`jellybean schema KIND`: the JSON Schema of a YAML kind, from the same models that validate it."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from jellybean.cli.app import app
from jellybean.errors import JellyBeanError
from jellybean.spec.base import did_you_mean
from jellybean.spec.loader import KINDS


@app.command()
def schema(
    kind: Annotated[str, typer.Argument(help=f"One of: {', '.join(KINDS)}.")],
) -> None:
    """Print the JSON Schema of one kind of YAML file, for editors that complete and check YAML
    (e.g. the YAML language server: `# yaml-language-server: $schema=workflow.schema.json`)."""
    if kind not in KINDS:
        raise JellyBeanError(f"schema: unknown kind '{kind}'{did_you_mean(kind, list(KINDS))}; use one of "
                             f"{', '.join(KINDS)}")
    doc = KINDS[kind].model_json_schema()
    doc = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": f"JellyBean {kind}", **doc}
    typer.echo(json.dumps(doc, indent=2))
