"""The `jellybean` command: one typer app, one file per command group, errors caught only here."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from typer.core import TyperGroup

from jellybean.errors import JellyBeanError, SpecError

err_console = Console(stderr=True)


class _Group(TyperGroup):
    """Turns a JellyBeanError into one clear message and a non-zero exit (tracebacks with --debug)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except JellyBeanError as exc:
            if ctx.params.get("debug"):
                raise
            for line in str(exc).splitlines() or [type(exc).__name__]:
                err_console.print(f"[bold red]error:[/] {line}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2 if isinstance(exc, SpecError) else 1) from None


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Plan and run ML inference workflows across edge devices, hubs, edge datacenters and the cloud.",
)


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
) -> None:
    """JellyBean."""


from jellybean.cli import plan as _plan  # noqa: E402  (registers commands on `app`)
from jellybean.cli import validate as _validate  # noqa: E402,F401

_ = _plan
from jellybean.cli import scene as _scene  # noqa: E402,F401
from jellybean.cli import zoo as _zoo  # noqa: E402,F401
from jellybean.cli import broker as _broker  # noqa: E402,F401
from jellybean.cli import run as _run  # noqa: E402,F401
from jellybean.cli import replay as _replay  # noqa: E402,F401
