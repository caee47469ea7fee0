"""`jellybean agent`, `jellybean deploy` and `jellybean up`: run a plan on agents over MQTT."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from jellybean.agents.processes import stop_processes
from jellybean.cli.app import app
from jellybean.tables import fit, stdout_console
from jellybean.cli.common import (BROKER_HELP, Adapt, AdaptPeriod, AdaptPolicy, ClientCert, ClientKey, Deadlines,
                                  FixedHardware, StartupDelay, adapt_options, LogLevel, PasswordFile, broker_url,
                                  interrupt_on_sigterm, load_deployment, replay_progress, setup_logging,
                                  stop_on_sigterm)

console = stdout_console()
err = Console(stderr=True)


@app.command()
def agent(
    name: Annotated[str, typer.Option("--name", help="This agent's name (a topic level and broker user).")],
    hardware: Annotated[str, typer.Option("--hardware", help="The hardware profile this device is (tiers/*.yaml).")],
    broker: Annotated[str, typer.Option("--broker", help=BROKER_HELP)],
    site: Annotated[Optional[str], typer.Option("--site", help="The infrastructure site it serves (default: --name).")] = None,
    ca: Annotated[Optional[Path], typer.Option("--ca", help="CA certificate for mqtts:// (broker config DIR/ca.crt).")] = None,
    password_file: PasswordFile = None,
    cert: ClientCert = None,
    key: ClientKey = None,
    models: Annotated[list[Path], typer.Option(
        "--models", metavar="DIR", help="Directory where model files are looked up (repeatable): the zoo's folder.")] = [],
    cache: Annotated[Optional[Path], typer.Option("--cache", help="Where models fetched over the broker are kept.")] = None,
    metrics_port: Annotated[Optional[int], typer.Option("--metrics-port", help="Prometheus endpoint port (0: any free port).")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="ONNX Runtime threads per worker where the plan does not say (it gives the threads each variant was profiled with).")] = None,
    log_level: Annotated[LogLevel, typer.Option(
        "--log-level", case_sensitive=False, help="What the agent logs on stderr.")] = "info",
) -> None:
    """Run an agent: announce, heartbeat, and run whatever the controller assigns, until stopped."""
    from jellybean.agents.agent import Agent, AgentOptions
    from jellybean.agents.broker import redact_url

    setup_logging(LogLevel(log_level).value)
    url = broker_url(broker, password_file, cert, key)
    a = Agent(AgentOptions(name=name, hardware=hardware, broker=url, site=site, ca=ca, model_dirs=tuple(models),
                           cache_dir=cache, metrics_port=metrics_port, threads=threads))
    stop_on_sigterm(lambda: a._stop.set())
    _stop_with_parent(lambda: a._stop.set())
    err.print(f"agent [bold]{name}[/] ({hardware}) at site {a.site}, broker {redact_url(url)}", highlight=False)
    try:
        a.run_forever()
    except KeyboardInterrupt:
        pass


def _stop_with_parent(stop) -> None:
    """With $JELLYBEAN_STOP_WITH_PARENT = the parent's PID (as `zoo profile` starts its agents), stop
    when that parent is gone: a parent interrupted before it could stop us leaves no agent behind."""
    import threading

    from jellybean.agents.processes import STOP_WITH_PARENT_ENV

    parent = os.environ.get(STOP_WITH_PARENT_ENV)
    if not parent or not parent.isdigit():
        return

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(0.5)
        stop()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _metrics_table(controller) -> Table:
    table = Table(title="agents", title_justify="left")
    for col in ("agent", "state", "operator", "items/s", "queue", "p50 ms", "p99 ms", "in", "out", "dropped"):
        table.add_column(col, justify="left" if col in ("agent", "state", "operator") else "right")
    for name, s in sorted(controller.agents.items()):
        who = name if s.announce.site == name else f"{name}@{s.announce.site}"
        state = "online" if s.online else "[red]offline[/]"
        ops = s.metrics.operators if s.metrics else []
        if not ops:
            table.add_row(who, state, "-", "", "", "", "", "", "", "")
        for o in ops:
            table.add_row(who, state, f"{o.operator}={o.variant}", f"{o.items_per_s:.1f}", str(o.queue_depth),
                          f"{o.latency_ms.get('p50', 0):.1f}", f"{o.latency_ms.get('p99', 0):.1f}",
                          str(o.items_in), str(o.items_out), str(o.dropped + o.duplicates))
    return table


def start_controller(dep, broker: str, ca: Optional[Path], wait: float, drop_after_ms: float, quiet: bool,
                     load_tolerance: Optional[float] = None, takeover=None, expect: tuple[str, ...] = (),
                     metrics_port: Optional[int] = None, outage_budget: float = 60.0, deadlines: bool = False,
                     adapt=None):
    """Serve the controller's metrics (on `metrics_port`, 0: a free one; None: none), connect, wait
    for agents (with a progress bar), publish, wait until they run it."""
    from jellybean.agents.controller import Controller
    from jellybean.errors import JellyBeanError

    deadline_ms = None
    if deadlines:
        deadline_ms = dep.inputs.workflow.slo.latency_ms if dep.inputs.workflow.slo else None
        if not deadline_ms:
            raise JellyBeanError(f"--deadlines drops items that cannot make the workflow's slo.latency_ms, and "
                                 f"workflow '{dep.workflow}' has none; add `slo: {{latency_ms: ...}}` to it")
    adapter = None
    if adapt is not None:
        from jellybean.adapt.runtime import Adapter

        adapter = Adapter(dep, adapt)
    controller = Controller(dep, broker, ca=ca, drop_after_ms=drop_after_ms, load_tolerance=load_tolerance,
                            takeover=takeover, outage_budget_s=outage_budget, deadline_ms=deadline_ms,
                            adapter=adapter)
    if metrics_port is not None:
        err.print(f"controller metrics at {controller.serve_metrics(metrics_port)}", highlight=False, soft_wrap=True)
    controller.connect()
    progress = Progress(TextColumn("[bold]agents online"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.description}"), console=err, transient=True, disable=quiet)
    task = progress.add_task("", total=None)
    with progress:
        missing = controller.wait_for_agents(
            wait, lambda n, total, miss: progress.update(task, completed=n, total=total,
                                                          description=f"waiting for {', '.join(miss)}" if miss else ""),
            expect=expect)
    if missing:
        from jellybean.agents.broker import parse_broker_url

        controller.stop()
        address = parse_broker_url(broker)
        hint = address.url if not address.username else \
            f"{address.url.replace('://', '://SITE@', 1)} --password-file SITE.password"
        raise JellyBeanError(f"no agent came online for site(s) {', '.join(missing)} within {wait:.0f} s; start "
                             f"`jellybean agent --name SITE --hardware HW --broker {hint}` there")
    controller.publish()
    if not quiet:
        err.print(f"[dim]{controller.events[-1].what}[/]")
    if not controller.wait_ready(max(wait, 30.0)):
        errors = controller.errors()
        controller.stop()
        raise JellyBeanError("the agents did not start their tasks: " + ("; ".join(errors) or "no heartbeat "
                                                                          "with the new assignment"))
    if not quiet:
        err.print("[green]deployed[/]: every agent runs its assignment")
    return controller


@app.command()
def deploy(
    plan: Annotated[Path, typer.Argument(help="plan.yaml written by `jellybean plan -o`.")],
    broker: Annotated[str, typer.Option("--broker", help=BROKER_HELP)],
    ca: Annotated[Optional[Path], typer.Option("--ca", help="CA certificate for mqtts://.")] = None,
    password_file: PasswordFile = None,
    cert: ClientCert = None,
    key: ClientKey = None,
    workflow: Annotated[Optional[Path], typer.Option("-w", "--workflow", help="Override the plan's workflow file.")] = None,
    zoo: Annotated[Optional[Path], typer.Option("-z", "--zoo", help="Override the plan's zoo manifest.")] = None,
    infrastructure: Annotated[Optional[Path], typer.Option("-i", "--infrastructure", help="Override the plan's infrastructure.")] = None,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for the agents the plan needs.")] = 60.0,
    drop_after_ms: Annotated[float, typer.Option("--drop-after-ms", help="Items older than this are dropped, and counted.")] = 5000.0,
    duration: Annotated[Optional[float], typer.Option("--for", help="Stop after this many seconds (default: until Ctrl-C).")] = None,
    replan_on_load: Annotated[Optional[float], typer.Option(
        "--replan-on-load", help="Also re-plan when the measured load differs from the plan's by more than this "
                                 "fraction (e.g. 0.3) for 10 s.")] = None,
    takeover_credentials: Annotated[Optional[Path], typer.Option(
        "--takeover-credentials", help="The `broker config` directory: with it the controller resumes a lost agent's "
                                       "broker session as that agent, to send on the items it held (a broker with "
                                       "users binds sessions to them).")] = None,
    metrics_port: Annotated[Optional[int], typer.Option(
        "--metrics-port", min=0, max=65535,
        help="Serve the controller's Prometheus endpoint on this port (0: any free port; printed).")] = None,
    deadlines: Deadlines = False,
    adapt: Adapt = False,
    adapt_policy: AdaptPolicy = "loki",
    adapt_period: AdaptPeriod = 5.0,
    startup_s: StartupDelay = 60.0,
    fixed_hardware: FixedHardware = False,
    outage_budget: Annotated[float, typer.Option(
        "--outage-budget", min=0.0,
        help="Seconds an agent may stay silent (its site cut off) before a re-plan moves its work; it keeps "
             "running its assignment meanwhile. A last will (the agent died) re-plans at once.")] = 60.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or live tables.")] = False,
) -> None:
    """The controller: publish assignments, watch the agents, re-plan when one stops (or the load shifts)."""
    setup_logging("warning")
    url = broker_url(broker, password_file, cert, key)
    dep = load_deployment(plan, workflow, zoo, infrastructure)
    takeover = None
    if takeover_credentials is not None:
        from jellybean.agents.broker import load_broker_config

        config = load_broker_config(takeover_credentials)
        takeover = lambda agent: config.url_for(agent) if agent in config.credentials else None  # noqa: E731
    controller = start_controller(dep, url, ca, wait, drop_after_ms, quiet, replan_on_load, takeover=takeover,
                                  metrics_port=metrics_port, outage_budget=outage_budget, deadlines=deadlines,
                                  adapt=adapt_options(adapt, adapt_policy, adapt_period, startup_s, fixed_hardware))
    try:
        watch(controller, duration, quiet)
    finally:
        controller.stop()


def _dashboard(controller, wire=None) -> Group:
    plan = controller.current.plan
    head = Text.assemble(("plan ", "bold"), f"{plan.name}: {plan.cost.total:.4f} $/h, version {controller.version}, ",
                         f"{controller.replans} re-plan(s)",
                         (f", lost: {', '.join(sorted(controller.lost))}" if controller.lost else "", "red"))
    events = [Text(f"{time.strftime('%H:%M:%S', time.localtime(e.at))} {e.what}", style="dim")
              for e in controller.events[-5:]]
    parts = [head, fit(_metrics_table(controller))]
    if controller.links:
        parts.append(fit(_links_table(controller, wire)))
    return Group(*parts, *events)


def _links_table(controller, wire=None) -> Table:
    """Site brokers' bridges: up, or down since when (their notifications); with `wire` (up
    --isolate) also the KB/s each way on the link's veth since the last refresh, and the messages
    the bridge's lower end holds (its broker's $SYS store count: a cut link's queue grows there)."""
    table = Table(title="links (site brokers' bridges)", title_justify="left")
    for col in ("bridge", "state", "since"):
        table.add_column(col)
    rates = wire() if wire is not None else {}
    if rates:
        table.add_column("wire KB/s up", justify="right")
        table.add_column("wire KB/s down", justify="right")
        table.add_column("held at lower end", justify="right")
    for name, status in sorted(controller.links.items()):
        state = "up" if status.up else "[red]down[/]"
        row = [name, state, time.strftime("%H:%M:%S", time.localtime(status.since))]
        if rates:
            up, down, held = rates.get(name, (None, None, None))
            row += ["-" if up is None else f"{up:.1f}", "-" if down is None else f"{down:.1f}",
                    "-" if held is None else f"{held:,}"]
        table.add_row(*row)
    return table


def watch(controller, duration: Optional[float] = None, quiet: bool = False, wire=None) -> None:
    """Run the controller for `duration` seconds (None: until Ctrl-C or SIGTERM); unless quiet, with
    a live table of the agents refreshed every second."""
    end = time.monotonic() + duration if duration else None
    until = (lambda: time.monotonic() > end) if end else None
    stop_on_sigterm(controller.stop)
    try:
        if quiet:
            controller.run(until=until)
            return
        with Live(_dashboard(controller, wire), console=err, refresh_per_second=1, transient=False) as live:
            controller.run(until=until, tick=lambda: live.update(_dashboard(controller, wire)))
    except KeyboardInterrupt:
        pass


def agent_names(dep, per_worker: bool = False) -> dict[str, str]:
    """Agent name -> site of the agents `spawn_agents` starts: one per site the plan uses, named
    after it; with `per_worker`, one per worker there (`SITE-1`, `SITE-2`, ...)."""
    from jellybean.agents.deployment import sites_needed

    workers: dict[str, int] = {}
    for w in dep.plan.workers:
        workers[w.location] = workers.get(w.location, 0) + w.count
    names = {}
    for site in sorted(sites_needed(dep.plan)):
        for name in ([f"{site}-{k}" for k in range(1, workers[site] + 1)] if per_worker else [site]):
            names[name] = site
    return names


def spawn_agents(dep, broker_url: str | dict[str, str], workdir: Path, threads: int = 1,
                 ca: Path | None = None, only: set[str] | None = None,
                 append: bool = False, per_worker: bool = False,
                 metrics_ports: int | None = None, wrap: dict[str, list[str]] | None = None) -> dict[str, subprocess.Popen]:
    """The agents of `agent_names` as processes, logs in workdir (with `per_worker` each is a
    device, so that a machine's cores run the site's operators side by side, not in one process).
    Agents serve Prometheus metrics on any free port, or on `metrics_ports`, +1, ... in name order.
    `broker_url` may map each agent name (or site) to its own URL (with that agent's credentials); a
    password goes to the agent in its environment ($JELLYBEAN_BROKER_PASSWORD), never on its
    command line. `wrap` maps a site to a command prefix (`ip netns exec NS`: inside its namespace)."""
    from jellybean.agents.broker import PASSWORD_ENV, split_password
    from jellybean.agents.deployment import sites_needed

    hardware = sites_needed(dep.plan)
    procs = {}
    for index, (name, site) in enumerate(agent_names(dep, per_worker).items()):
        port = 0 if metrics_ports is None else metrics_ports + index
        if only is not None and name not in only:
            continue
        target = broker_url if isinstance(broker_url, str) else broker_url.get(name, broker_url.get(site))
        url, password = split_password(target)
        env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
        env["PYTHONUNBUFFERED"] = "1"
        if password is not None:
            env[PASSWORD_ENV] = password
        log = open(workdir / f"agent-{name}.log", "a" if append else "w")  # a restarted agent's log goes on
        procs[name] = subprocess.Popen(
            [*(wrap or {}).get(site, []), sys.executable, "-m", "jellybean", "agent", "--name", name, "--site", site,
             "--hardware", hardware[site], "--broker", url, "--models", str(dep.zoo_dir), "--threads", str(threads),
             "--metrics-port", str(port), "--cache", str(workdir / "models"), *(["--ca", str(ca)] if ca else [])],
            stdout=log, stderr=subprocess.STDOUT, env=env)
    return procs


def _record_up(ctx: typer.Context, workdir: Path):
    """up.json in `workdir` (for `status` and `down`), removed when `up` exits however it exits;
    and SIGTERM (`jellybean down`) interrupts `up` as Ctrl-C does until `watch` takes it over, so
    that the agents and the broker it started are stopped from the first moment."""
    from jellybean.agents.upstate import UpRecorder

    recorder = UpRecorder(workdir)
    ctx.call_on_close(recorder.close)
    interrupt_on_sigterm(ctx)
    return recorder


@app.command()
def up(
    ctx: typer.Context,
    example: Annotated[Path, typer.Argument(help="A directory with workflow.yaml, zoo.yaml and infrastructure.yaml.")],
    workdir: Annotated[Path, typer.Option("--workdir", help="Plan, broker and agent logs go here.")] = Path("out/up"),
    port: Annotated[Optional[int], typer.Option("--port", help="Broker port (default: a free one).")] = None,
    embedded: Annotated[bool, typer.Option("--embedded", help="Use the embedded broker even if Mosquitto is installed.")] = False,
    replay: Annotated[Optional[Path], typer.Option("--replay", help="Replay this CityFlow-layout dataset once deployed, then stop.")] = None,
    scenario: Annotated[Optional[str], typer.Option("--scenario", help="Scenario to replay (default: the first).")] = None,
    speed: Annotated[float, typer.Option("--speed", help="Replay speed-up.")] = 1.0,
    trace: Annotated[Optional[Path], typer.Option(
        "--trace", help="With --replay: vary the offered load over time (a CSV `t,multiplier` or `t,cameras`; "
                        "examples/traces/).")] = None,
    preload: Annotated[bool, typer.Option(
        "--preload", help="Encode every frame of the replay before it starts, as cameras that encode their own.")] = False,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write the replay's HTML report here.")] = None,
    submission: Annotated[Optional[Path], typer.Option("--submission", help="Write the replay's AI City submission file.")] = None,
    time_limit: Annotated[float, typer.Option("--time-limit", help="Planner time limit, s.")] = 30.0,
    duration: Annotated[Optional[float], typer.Option("--for", help="Without --replay: stop after this many seconds.")] = None,
    replan_on_load: Annotated[Optional[float], typer.Option(
        "--replan-on-load", help="Also re-plan when the measured load differs from the plan's by this fraction.")] = None,
    agent_per_worker: Annotated[bool, typer.Option(
        "--agent-per-worker", help="One agent process per planned worker (a device each) instead of one per site.")] = False,
    deadlines: Deadlines = False,
    adapt: Adapt = False,
    adapt_policy: AdaptPolicy = "loki",
    adapt_period: AdaptPeriod = 5.0,
    startup_s: StartupDelay = 60.0,
    fixed_hardware: FixedHardware = False,
    isolate: Annotated[bool, typer.Option(
        "--isolate", help="Each site its own network namespace with its own broker, bridged over the infrastructure's "
                          "links shaped to their bandwidth (needs root; without it, one broker per site on loopback "
                          "ports, bridged, not shaped).")] = False,
    outage_budget: Annotated[float, typer.Option(
        "--outage-budget", min=0.0,
        help="Seconds a site may stay unreachable before the controller re-plans without it (an agent's last will "
             "re-plans at once); with --isolate also what each bridge queues, and items count as late (dropped) only "
             "past this plus 5 s.")] = 60.0,
    metrics_port: Annotated[Optional[int], typer.Option(
        "--metrics-port", min=1, max=65000,
        help="Agents' Prometheus endpoints on this port and the next ones, in agent name order (default: free ports; "
             "printed either way).")] = None,
    controller_metrics_port: Annotated[int, typer.Option(
        "--controller-metrics-port", min=0, max=65535,
        help="The controller's Prometheus endpoint port (default 0: a free port; printed either way).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or live tables.")] = False,
) -> None:
    """Everything on one machine: plan, a broker, one agent process per planned site, the controller."""
    from jellybean.agents.broker import redact_url, start_local_broker
    from jellybean.agents.deployment import Deployment
    from jellybean.errors import SpecError
    from jellybean.planner.build import build_problem, load_inputs
    from jellybean.planner.render import write_plan
    from jellybean.planner.strategies import make_plan

    setup_logging("warning")
    if isolate and (embedded or port is not None):
        from jellybean.errors import JellyBeanError

        raise JellyBeanError("--isolate runs a Mosquitto per site, each on its own address and port; drop "
                             + " and ".join(o for o, given in (("--embedded", embedded), ("--port", port is not None))
                                            if given))
    load_trace = None
    if trace is not None:
        from jellybean.errors import JellyBeanError
        from jellybean.replay.trace import read_trace

        if replay is None:
            raise JellyBeanError("--trace shapes a replay; give --replay DATASET too")
        load_trace = read_trace(trace)
    files = {k: example / f"{k}.yaml" for k in ("workflow", "zoo", "infrastructure")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise SpecError([f"{m}: not found; an example directory holds workflow.yaml, zoo.yaml and "
                         "infrastructure.yaml" for m in missing])
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    recorder = _record_up(ctx, workdir)
    inputs = load_inputs(files["workflow"], files["zoo"], files["infrastructure"])
    plan = make_plan(build_problem(inputs), "optimal", time_limit=time_limit, inputs=inputs.paths)
    write_plan(plan, workdir / "plan.yaml")
    err.print(f"plan: {plan.solver.status} {plan.cost.total:.4f} $/h, variants "
              + ", ".join(f"{k}={v}" for k, v in plan.variants.items()) + f" -> {workdir / 'plan.yaml'}")
    dep = Deployment(plan=plan, inputs=inputs, zoo_dir=files["zoo"].resolve().parent)
    names = agent_names(dep, agent_per_worker)
    if isolate:
        from jellybean.cli.sites import start_sites

        sites = start_sites(dep, workdir / "brokers", names, outage_budget)
        broker, url, agent_urls, ca = sites, sites.controller_url, sites.agent_urls(), sites.ca
        recorder.update(plan=plan.name, broker_url=redact_url(url), site_brokers=sites.pids(),
                        netns_run=sites.network.run_id if sites.network else "")
    else:
        sites = None
        broker = start_local_broker(workdir, port, prefer="embedded" if embedded else "mosquitto")
        url, agent_urls, ca = broker.url, broker.url, None
        recorder.update(plan=plan.name, broker_url=broker.url, broker_pid=getattr(broker, "pid", None))
        err.print(f"broker: {broker.kind} at [bold]{broker.url}[/]")
    procs: dict[str, subprocess.Popen] = {}
    controller = None
    try:
        procs = spawn_agents(dep, agent_urls, workdir, ca=ca, per_worker=agent_per_worker, metrics_ports=metrics_port,
                             wrap=sites.wraps() if sites else None)
        recorder.update(agents={name: p.pid for name, p in procs.items()})
        err.print(f"agents: {', '.join(procs)} (logs in {workdir})")
        # Across sites, an item may wait out a link outage in a bridge's queue: it is late (dropped
        # as such) only once it is older than the outage budget and the usual 5 s.
        drop_after_ms = 5000.0 + (outage_budget * 1000.0 if isolate else 0.0)
        controller = start_controller(dep, url, ca, 60.0, drop_after_ms, quiet, replan_on_load,
                                      expect=tuple(procs) if agent_per_worker else (),
                                      metrics_port=controller_metrics_port, outage_budget=outage_budget,
                                      deadlines=deadlines,
                                      adapt=adapt_options(adapt, adapt_policy, adapt_period, startup_s, fixed_hardware),
                                      takeover=sites.takeover_url if sites else None)
        err.print("metrics: " + ", ".join(f"{name} {u}" for name, u in sorted(controller.metrics_urls().items())),
                  highlight=False, soft_wrap=True)
        status_args = f"--broker {url}" if sites is None else \
            (f"--broker {redact_url(url)} --ca {ca} --password-file "
             f"{sites.configs.sites[sites.controller_at].password_file('controller')}")
        err.print(f"see it with: jellybean status {status_args}\nstop it with: jellybean down --workdir {workdir}",
                  highlight=False, soft_wrap=True)
        if replay is not None:
            from jellybean.cli.replay import finish_replay, open_scenario
            from jellybean.replay.driver import BrokerReplay

            scen = open_scenario(replay, scenario)
            wire = sites.wire_recorder() if sites else None
            # The controller keeps watching while the replay runs: lost agents, load, --adapt.
            threading.Thread(target=controller.run, name="controller", daemon=True).start()
            with replay_progress(quiet) as cb:
                data = BrokerReplay(sites.url(sites.controller_at, "replay") if sites else url, ca=ca, speed=speed, progress=cb, preload=preload,
                                    site_urls=sites.replay_urls() if sites else None,
                                    on_clock=wire.on_clock if wire else None, trace=load_trace).run(scen)
            if wire is not None:
                data.wire, data.wire_samples = wire.measured(), list(wire.samples)
            decisions = [e for e in controller.events if e.what.startswith("adapt")]
            if decisions:
                err.print("decisions (s since the replay started):", highlight=False)
                for e in decisions:
                    err.print(f"  {e.at - data.clock_start:6.1f}  {e.what}", highlight=False, soft_wrap=True,
                              markup=False)
            finish_replay(data, scen, plan, report=report, json_out=False, submission=submission)
            return
        hint = f"--sites {sites.configs.dir}" if sites else f"--broker {redact_url(url)}"
        err.print(f"replay into it with: jellybean replay DATASET {hint}   (Ctrl-C stops)", highlight=False,
                  soft_wrap=True)
        watch(controller, duration, quiet, wire=sites.wire_rates if sites and sites.network else None)
    finally:
        if controller is not None:
            controller.stop()
        stop_processes(procs.values())
        broker.stop()


