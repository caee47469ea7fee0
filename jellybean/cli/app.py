"""The typer app every command registers on, and the one place errors are caught.

Command modules import `app` from here; `main` imports the command modules. Nothing here imports
a command module, so there is no circle."""

from __future__ import annotations

import logging
import sys
import types

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup
from typer.exceptions import TyperException

from jellybean.errors import JellyBeanError, SpecError

err_console = Console(stderr=True)

DEBUG_FLAG = "--debug"
_MAX_INTERNAL_MESSAGE = 300  # characters of an unexpected exception's message shown without --debug


def hoist_debug(args: list[str]) -> list[str]:
    """``jellybean plan ... --debug`` as ``jellybean --debug plan ...``: the flag belongs to the group,
    but users put it after the command. Arguments after ``--`` are left alone."""
    end = args.index("--") if "--" in args else len(args)
    if DEBUG_FLAG not in args[1:end]:
        return args
    return [DEBUG_FLAG, *(a for a in args[:end] if a != DEBUG_FLAG), *args[end:]]


def internal_error_line(exc: BaseException) -> str:
    """One line for an exception that is not a JellyBeanError: a bug, or an input nothing checked."""
    message = " ".join(str(exc).split())
    if len(message) > _MAX_INTERNAL_MESSAGE:
        message = message[: _MAX_INTERNAL_MESSAGE - 3] + "..."
    what = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return f"internal error: {what}; rerun with {DEBUG_FLAG} for the traceback"


def _untyped_help_option(command, ctx):
    option = type(command).get_help_option(command, ctx)
    if option is not None and option.metavar is None:
        option.metavar = ""
    return option


def _flags_without_type(command) -> None:
    """Help lists a flag as `--json`, not `--json <bool>`: a flag takes no value to describe.
    (Typer prints every option's type, flags included; an empty metavar is its way to say none.)"""
    for param in getattr(command, "params", ()):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    if "get_help_option" not in vars(command):  # --help is made on demand, so untyped on demand
        command.get_help_option = types.MethodType(_untyped_help_option, command)
    for sub in getattr(command, "commands", {}).values():
        _flags_without_type(sub)


class _Group(TyperGroup):
    """Turns a JellyBeanError into one clear message and a non-zero exit, and any other exception
    into one "internal error" line and exit 1 (tracebacks only with --debug)."""

    def get_command(self, ctx, cmd_name):
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _flags_without_type(command)
        return command

    def get_params(self, ctx):
        _flags_without_type(self)
        return super().get_params(ctx)

    def parse_args(self, ctx, args):
        if ctx.parent is None:
            args = hoist_debug(list(args))
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except JellyBeanError as exc:
            if ctx.params.get("debug"):
                raise
            for line in str(exc).splitlines() or [type(exc).__name__]:
                err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2 if isinstance(exc, SpecError) else 1) from None
        except (TyperException, typer.Exit, typer.Abort):
            raise  # usage errors, --help, explicit exits: typer reports them itself
        except Exception as exc:  # noqa: BLE001 - the one place that turns a bug into one line
            if ctx.params.get("debug"):
                raise
            err_console.print(f"[bold red]{escape(internal_error_line(exc))}[/]", highlight=False, markup=True,
                              soft_wrap=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    add_completion=True,   # --install-completion / --show-completion for bash, zsh, fish
    pretty_exceptions_enable=False,
    help="Plan and run ML inference workflows across edge devices, hubs, edge datacenters and the cloud.",
)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (stdout stays for --json)."""

    @property
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # noqa: ANN001
        pass


_DEBUG_LOG = _StderrHandler()
_DEBUG_LOG.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"jellybean {version('jellybean')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            typer.echo("jellybean (not installed; run `make install`)")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option(
        "--debug", help="Show tracebacks instead of one-line errors, and the planner's debug log (model sizes). "
                        "Accepted anywhere on the line.")] = False,
    show_version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """JellyBean."""
    planner = logging.getLogger("jellybean.planner")
    if debug:
        planner.addHandler(_DEBUG_LOG)
        planner.setLevel(logging.DEBUG)
    else:  # commands run in one process (tests) must not inherit an earlier --debug
        planner.removeHandler(_DEBUG_LOG)
        planner.setLevel(logging.NOTSET)
