"""`jellybean status` (what runs on a broker) and `jellybean down` (stop what `jellybean up` started)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from jellybean.cli.app import app
from jellybean.cli.common import BROKER_HELP, ClientCert, ClientKey, PasswordFile, broker_url
from jellybean.tables import fit, stdout_console

console = stdout_console()
err = Console(stderr=True)


def _num(value: float | int | None, fmt: str = "{:.1f}") -> str:
    """A figure in full: "-" when unknown; a small non-zero rate keeps two significant digits."""
    if value is None:
        return "-"
    if fmt == "{:.1f}" and 0 < abs(value) < 0.05:
        return f"{value:.2g}"
    return fmt.format(value)


def _table(title: str, columns: list[tuple[str, bool]]) -> Table:
    """Names fold onto more lines; numbers (right-justified) never wrap nor get cut (`fit`)."""
    table = Table(title=title, title_justify="left")
    for name, number in columns:
        table.add_column(name, justify="right" if number else "left", no_wrap=number, overflow="fold")
    return table


def _agents_table(status) -> Table:
    table = _table("agents", [("agent", False), ("state", False), ("version", True),
                              ("task", False), ("items/s", True), ("queue", True), ("p99 ms", True),
                              ("dropped", True), ("errors", False)])
    for a in status.agents:
        state = {"online": "[green]online[/]", "offline": "[red]offline[/]"}.get(a.state, "[yellow]silent[/]")
        version = _num(a.assignment_version, "{}")
        if a.published_version is not None and a.published_version != a.assignment_version:
            version += f" (published {a.published_version})"
        errors = "; ".join(a.errors) + (f"{'; ' if a.errors else ''}{a.rejected} rejected message(s)"
                                        if a.rejected else "")
        who = a.name if a.site in (a.name, "") else f"{a.name}@{a.site}"
        head = (Text(who), state, version)
        if not a.tasks:
            table.add_row(*head, "-", "", "", "", "", Text(errors, style="red"))
        for i, t in enumerate(a.tasks):
            task = f"{t.operator}={t.variant}" + (f" ×{t.workers}" if t.workers and t.workers > 1 else "")
            table.add_row(*(head if i == 0 else ("", "", "")), Text(task), _num(t.items_per_s),
                          _num(t.queue_depth, "{}"), _num(t.p99_ms), _num(t.dropped, "{}"),
                          Text(errors if i == 0 else "", style="red"))
    return table


def _links_table(status) -> Table:
    table = _table("links", [("from", False), ("to", False), ("KB/s", True), ("Mbit/s", True),
                             ("bandwidth Mbit/s", True), ("use", True), ("planned KB/s", True)])
    for link in status.links:
        use = link.utilisation
        kb = None if link.bytes_per_s is None else link.bytes_per_s / 1024
        table.add_row(Text(link.from_), Text(link.to), _num(kb), _num(link.mbps, "{:.3f}"),
                      _num(link.bandwidth_mbps, "{:.10g}"),
                      "-" if use is None else f"{use:.1%}", _num(link.planned_kb_per_s))
    return table


@app.command()
def status(
    broker: Annotated[str, typer.Option("--broker", help=BROKER_HELP)],
    ca: Annotated[Optional[Path], typer.Option(
        "--ca", help="CA certificate for mqtts:// (broker config DIR/ca.crt).")] = None,
    password_file: PasswordFile = None,
    cert: ClientCert = None,
    key: ClientKey = None,
    wait: Annotated[float, typer.Option(
        "--wait", help="Collect for at most this many seconds: the retained state, then two metrics rounds of every "
                       "online agent (about 4 s) for its rates.")] = 10.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Show what runs on a broker: the plan, every agent and every link. Reads only; exits 1 when
    nothing runs there."""
    from jellybean.agents.status import collect_status

    found = collect_status(broker_url(broker, password_file, cert, key), ca=ca, wait=wait)
    if not found.running:
        raise found.nothing_running()
    if json_out:
        typer.echo(json.dumps(found.to_json(), indent=2))
        return
    if found.plan is not None:
        c = found.plan.cost
        console.print(Text.assemble(("plan ", "bold"), f"{found.plan.name} version {found.version}: ",
                                    (f"{c.total:.4f} $/h", "bold"),
                                    f" (compute {c.compute:.4f}, network {c.network:.4f})"), soft_wrap=True)
    else:
        console.print("[yellow]no plan published[/]: agents are online but no controller has deployed on this broker "
                      "(`jellybean deploy PLAN --broker URL`)", soft_wrap=True)
    console.print(fit(_agents_table(found)))
    if found.links:
        console.print(fit(_links_table(found)))
    if found.bridges:
        table = _table("bridges between site brokers", [("bridge", False), ("state", False)])
        for name, up in found.bridges:
            table.add_row(Text(name), "up" if up else "[red]down[/]")
        console.print(fit(table))
    if not found.complete:
        err.print(f"[yellow]note[/]: not every agent sent two metrics rounds within --wait {wait:g} s; rates shown "
                  "as - are unknown (give a longer --wait)", soft_wrap=True)


@app.command()
def down(
    workdir: Annotated[Path, typer.Option("--workdir", help="The --workdir `jellybean up` ran with.")] = Path("out/up"),
    timeout: Annotated[float, typer.Option(
        "--timeout", min=0.0, help="Seconds to wait for everything to stop before killing what is left.")] = 30.0,
) -> None:
    """Stop what `jellybean up` started (itself, its agents and broker), as recorded in WORKDIR/up.json."""
    from jellybean.agents.upstate import read_state, remove_state, stop

    state = read_state(workdir)
    up = state.up
    with err.status("stopping: " + ", ".join(f"{p.label} (pid {p.pid})" for p in state.processes)):
        result = stop(state, timeout)
    if result.remaining:
        raise _still_running(result.remaining)
    if state.netns_run:
        from jellybean.sites import destroy_run

        for ns in destroy_run(state.netns_run):   # an `up --isolate` that was killed leaves its namespaces
            err.print(f"removed namespace {ns}", highlight=False)
    remove_state(workdir)   # `up` removes it as it exits; after a kill it is left to us
    if result.stale:
        err.print(f"nothing was running: every process in {workdir / 'up.json'} had exited already "
                  f"({up.label + ' pid ' + str(up.pid) if up else 'no up recorded'}); removed the stale file",
                  highlight=False, soft_wrap=True)
        return
    for p in result.stopped:
        err.print(f"stopped {p.label} (pid {p.pid})", highlight=False)
    for p in result.killed:
        err.print(f"[yellow]killed[/] {p.label} (pid {p.pid}): it did not stop within {timeout:g} s", highlight=False)
    for p in result.already_gone:
        err.print(f"[dim]{p.label} (pid {p.pid}) had exited already[/]", highlight=False)


def _still_running(procs):
    from jellybean.errors import JellyBeanError

    return JellyBeanError("still running after SIGKILL: " + ", ".join(f"{p.label} (pid {p.pid})" for p in procs)
                          + "; they may belong to another user: stop them as that user")
