"""Options and helpers that several command modules share (broker credentials, logging, loading a
deployment, the replay progress bar). Command modules import this; it imports none of them."""

from __future__ import annotations

import logging
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

err = Console(stderr=True)

LogLevel = Enum("LogLevel", {name: name for name in ("debug", "info", "warning", "error")}, type=str)


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def interrupt_on_sigterm(ctx: typer.Context) -> None:
    """Until the command ends, SIGTERM interrupts it as Ctrl-C does, so that the processes it started
    are stopped by its own clean-up (a plain SIGTERM would end it and leave them running)."""
    previous = signal.getsignal(signal.SIGTERM)

    def interrupt(*_) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)   # one is enough: cleaning up must not be cut short
        raise KeyboardInterrupt

    ctx.call_on_close(lambda: signal.signal(signal.SIGTERM, previous))
    signal.signal(signal.SIGTERM, interrupt)


def stop_on_sigterm(stop) -> None:
    signal.signal(signal.SIGTERM, lambda *_: stop())


# `deploy` and `up`: the controller puts the workflow's latency SLO in every assignment as a deadline.
Deadlines = Annotated[bool, typer.Option(
    "--deadlines", help="Agents drop an item at the head of a queue when, at the operator's current service "
                        "time, it would miss the workflow's slo.latency_ms (reason `deadline`), instead of "
                        "processing it late.")]


# `deploy` and `up`: Loki-style accuracy and hardware scaling at run time (jellybean.adapt).
Adapt = Annotated[bool, typer.Option(
    "--adapt", help="Follow the measured demand: every --adapt-period seconds pick variants, their shares and "
                    "worker counts on the plan's sites (the cheapest at the accuracy target; under a burst the "
                    "most accurate mix that keeps up, never below slo.min_accuracy).")]
AdaptPolicyName = Enum("AdaptPolicyName", {"loki": "loki", "hardware": "hardware"}, type=str)
AdaptPolicy = Annotated[AdaptPolicyName, typer.Option(
    "--adapt-policy", case_sensitive=False,
    help="loki: hardware scaling, then accuracy scaling; hardware: the plan's variants on more or fewer "
         "workers only (the baseline).")]
AdaptPeriod = Annotated[float, typer.Option("--adapt-period", min=0.5, help="Seconds between decisions.")]
StartupDelay = Annotated[float, typer.Option(
    "--startup-s", min=0.0, help="Seconds before a new elastic (cloud-tier) worker is usable: a VM's boot.")]
FixedHardware = Annotated[bool, typer.Option(
    "--fixed-hardware", help="With --adapt: no elastic workers beyond those the plan runs.")]


def adapt_options(adapt: bool, policy: str, period: float, startup_s: float, fixed: bool):
    """The controller's AdaptOptions, or None without --adapt."""
    if not adapt:
        return None
    from jellybean.adapt.runtime import AdaptOptions

    return AdaptOptions(policy=AdaptPolicyName(policy).value, period_s=period, startup_s=startup_s, elastic=not fixed)


# The broker's secrets never go on a command line: a password comes from a file or the environment.
PasswordFile = Annotated[Optional[Path], typer.Option(
    "--password-file", help="Read the broker password from this file (`broker config` writes DIR/clients/USER.password); "
                            "or set JELLYBEAN_BROKER_PASSWORD. A USER.crt and USER.key beside it are used as the "
                            "client certificate.")]
ClientCert = Annotated[Optional[Path], typer.Option(
    "--cert", help="Client certificate for mutual TLS (`broker config --client-certs`: DIR/clients/USER.crt).")]
ClientKey = Annotated[Optional[Path], typer.Option(
    "--key", help="The client certificate's key (default: the certificate's path with .key).")]
BROKER_HELP = ("mqtt://host:port, or mqtts://USER@host:port with --password-file or $JELLYBEAN_BROKER_PASSWORD "
               "(a password in the URL works too, but is then on the command line)")


def broker_url(url: str, password_file: Optional[Path], cert: Optional[Path], key: Optional[Path]) -> str:
    """The URL a client of this process connects with: its password and certificate resolved.
    Never print it: show `redact_url(url)`."""
    from jellybean.agents.broker import client_url

    return client_url(url, password_file=password_file, cert=cert, key=key)


def load_deployment(plan_path: Path, workflow: Optional[Path], zoo: Optional[Path], infrastructure: Optional[Path]):
    from jellybean.agents.deployment import Deployment, resolve_inputs
    from jellybean.planner.render import read_plan

    plan = read_plan(plan_path)
    inputs = resolve_inputs(plan, plan_path, {"workflow": workflow, "zoo": zoo, "infrastructure": infrastructure})
    return Deployment(plan=plan, inputs=inputs, zoo_dir=Path(inputs.paths["zoo"]).resolve().parent)


class replay_progress:
    """A progress bar whose callback takes (frames sent, frames in all)."""

    def __init__(self, quiet: bool) -> None:
        self.progress = Progress(TextColumn("[bold]replay"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
                                 console=err, transient=True, disable=quiet)
        self.task = self.progress.add_task("", total=None)

    def __enter__(self):
        self.progress.__enter__()
        return lambda done, total: self.progress.update(self.task, completed=done, total=total or None)

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)
