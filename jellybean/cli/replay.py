"""`jellybean replay DIR`: replay a CityFlow-layout dataset and report what the plan delivers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from jellybean.cli.app import app
from jellybean.tables import stdout_console
from jellybean.cli import common

console = stdout_console()
err = Console(stderr=True)


def open_scenario(directory: Path, scenario: Optional[str]):
    from jellybean.errors import SpecError
    from jellybean.replay.cityflow import open_dataset

    if not directory.is_dir():
        raise SpecError([f"{directory}: no such dataset directory; write one with `jellybean scene {directory}`"])
    ds = open_dataset(directory)
    if not ds.scenarios:
        raise SpecError([f"{directory}: no scenario found (expected train|validation|test/S0X/cNNN/vdo.avi)"])
    return ds.scenario(scenario) if scenario else ds.scenarios[0]


def finish_replay(data, scenario, plan, *, report: Optional[Path], json_out: bool, submission: Optional[Path]):
    from jellybean.replay.outcome import build_result, nothing_came_out, predictions
    from jellybean.replay.report import render_terminal, write_html_report
    from jellybean.replay.tracking_metrics import write_submission

    result = build_result(data, scenario, plan)
    if submission is not None:
        write_submission(submission, predictions(data), scenario=scenario)
        err.print(f"submission written to {submission}")
    if report is not None:
        page = write_html_report(result, report, plan)
        err.print(f"report written to {page}")
    if json_out:
        typer.echo(result.to_json())
    else:
        render_terminal(result, console, plan)
    if (nothing := nothing_came_out(result)) is not None:
        from jellybean.errors import JellyBeanError

        raise JellyBeanError(f"replay of {result.scenario}: {nothing}; see the problems above and the agents' logs")
    return result


@app.command()
def replay(
    directory: Annotated[Path, typer.Argument(help="Dataset root in the CityFlow layout (or `jellybean scene`'s).")],
    scenario: Annotated[Optional[str], typer.Option("--scenario", help="S01, S02, ... (default: the first).")] = None,
    broker: Annotated[Optional[str], typer.Option("--broker", help="Replay into a running deployment at this URL: "
                                                                   + common.BROKER_HELP)] = None,
    sites: Annotated[Optional[Path], typer.Option(
        "--sites", help="Replay into a deployment with a broker per site: the directory `broker config --per-site` "
                        "wrote (`up --isolate`: WORKDIR/brokers). Each camera publishes at its own site's broker and "
                        "the results come from the controller's site's, as user replay, with DIR/ca.crt.")] = None,
    local: Annotated[bool, typer.Option("--local", help="Run the plan's operators in this process instead.")] = False,
    plan: Annotated[Optional[Path], typer.Option("--plan", help="The plan (needed with --local; with --broker it adds "
                                                                "predictions and $/h to the report).")] = None,
    ca: Annotated[Optional[Path], typer.Option("--ca", help="CA certificate for mqtts://.")] = None,
    password_file: common.PasswordFile = None,
    cert: common.ClientCert = None,
    key: common.ClientKey = None,
    speed: Annotated[float, typer.Option("--speed", help="Play X times faster than recorded (--local: 0 = no pacing).")] = 1.0,
    preload: Annotated[bool, typer.Option(
        "--preload", help="With --broker: decode and JPEG-encode every frame before the clock starts (memory for all "
                          "of them), so that during the replay this process only publishes, as cameras that "
                          "encode their own frames.")] = False,
    seconds: Annotated[Optional[float], typer.Option("--seconds", help="Replay only the first S seconds of each camera.")] = None,
    trace: Annotated[Optional[Path], typer.Option(
        "--trace", help="Vary the offered load over time: a CSV `t,multiplier` (the recorded rate times this) or "
                        "`t,cameras` (how many publish), each row held until the next (examples/traces/).")] = None,
    drain: Annotated[float, typer.Option("--drain", help="Seconds to wait for the last results.")] = 15.0,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write an HTML report with plots into this directory.")] = None,
    submission: Annotated[Optional[Path], typer.Option("--submission", help="Write an AI City track-1 submission file.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    track_store: Annotated[Optional[Path], typer.Option(
        "--track-store", help="After the run, add the delivered tracks to this DuckDB track store (made if missing) "
                              "for `jellybean analytics query`.")] = None,
) -> None:
    """Publish every camera's frames at its recorded rate and offset; report throughput, latency, bytes, IDF1."""
    from jellybean.errors import JellyBeanError

    common.setup_logging("warning")
    if sum((local, broker is not None, sites is not None)) != 1:
        raise JellyBeanError("give exactly one of --broker URL (a running deployment), --sites DIR (one with a broker "
                             "per site) or --local (in-process)")
    site_urls = None
    if sites is not None:
        from jellybean.agents.broker import REPLAY, load_site_configs

        if password_file or cert or key or ca:
            raise JellyBeanError("--sites reads the replay user's passwords and the CA from DIR; drop --password-file, "
                                 "--cert, --key and --ca")
        controller_site, configs = load_site_configs(sites)
        site_urls = {site: cfg.url_for(REPLAY) for site, cfg in configs.items()}
        broker, ca = site_urls[controller_site], configs[controller_site].ca
    if speed < 0 or (broker is not None and speed == 0):
        raise JellyBeanError(f"--speed must be > 0 (got {speed})" + ("" if broker else "; 0 means no pacing with --local"))
    if local and plan is None:
        raise JellyBeanError("--local needs --plan PLAN (the variants and routes to run)")
    if local and trace is not None:
        raise JellyBeanError("--trace is not supported with --local (it runs as fast as this process can); replay "
                             "into a deployment with --broker or --sites")
    load_trace = None
    if trace is not None:
        from jellybean.replay.trace import read_trace

        load_trace = read_trace(trace)
    if local and (password_file or cert or key):
        raise JellyBeanError("--password-file, --cert and --key are for --broker; --local uses no broker")
    url = common.broker_url(broker, password_file, cert, key) if broker is not None and sites is None else broker
    scen = open_scenario(directory, scenario)
    dep = common.load_deployment(plan, None, None, None) if plan is not None else None
    with common.replay_progress(quiet or json_out) as cb:
        if local:
            from jellybean.replay.local import run_local

            data = run_local(dep, scen, speed=speed, limit_s=seconds, progress=cb)
        else:
            from jellybean.replay.driver import BrokerReplay

            data = BrokerReplay(url, ca=ca, speed=speed, drain_s=drain, limit_s=seconds, progress=cb,
                                preload=preload, site_urls=site_urls, trace=load_trace).run(scen)
    plan_used = dep.plan if dep else running_plan(data)
    finish_replay(data, scen, plan_used, report=report, json_out=json_out, submission=submission)
    if track_store is not None:
        store_tracks(track_store, data, scen)


def store_tracks(path: Path, data, scenario) -> int:
    """The sink's delivered boxes, as observations, added to the track store at ``path``."""
    from jellybean.analytics.load import from_delivered, write

    columns, hz = from_delivered(data.sink.snapshot(), scenario)
    written = write(path, columns, hz)
    err.print(f"{written} observations of the delivered tracks written to {path}", highlight=False, soft_wrap=True)
    return written


def running_plan(data):
    """The plan the deployment announced with its routes (None from an older controller)."""
    from jellybean.spec.plan import Plan

    if data.plan_doc is None:
        return None
    try:
        return Plan.model_validate(data.plan_doc)
    except ValueError:
        err.print("[yellow]the deployment's plan could not be read; the report goes without it[/]")
        return None
