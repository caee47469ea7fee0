"""`jellybean broker config | run`: a Mosquitto configuration with TLS, passwords and ACL, and running it."""

from __future__ import annotations

import json

import signal
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from jellybean.cli.app import app
from jellybean.tables import fit, stdout_console
from jellybean.errors import JellyBeanError

console = stdout_console()
err_console = Console(stderr=True)

broker_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Write a Mosquitto configuration (TLS, one password and ACL per agent) and run a broker.",
)
app.add_typer(broker_app, name="broker")


@broker_app.command("config")
def config(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Write the CA, certificates, passwd, acl, "
                                                                  "mosquitto.conf and credentials.yaml here.")],
    plan_file: Annotated[Optional[Path], typer.Option(
        "--plan", help="One agent per site where this plan runs workers, allowed to forward to every site "
                       "reachable over the infrastructure's links; those that can run the workflow's last "
                       "operator may write its sink.")] = None,
    infrastructure: Annotated[Optional[Path], typer.Option(
        "--infrastructure", "-i", help="The plan's infrastructure YAML (default: the path the plan records).")] = None,
    workflow: Annotated[Optional[Path], typer.Option(
        "--workflow", "-w", help="The plan's workflow YAML (default: the path the plan records).")] = None,
    zoo: Annotated[Optional[Path], typer.Option(
        "--zoo", "-z", help="The plan's zoo manifest (default: the path the plan records).")] = None,
    agents: Annotated[Optional[list[str]], typer.Option(
        "--agent", help="An agent (repeatable): NAME serves the site of its name, NAME@SITE another "
                        "device at SITE.")] = None,
    sinks: Annotated[Optional[list[str]], typer.Option(
        "--sink", help="Agent NAME may publish the workflow's results on the sink topics (repeatable; "
                       "with --plan, the agents that can run the last operator may already).")] = None,
    replay_users: Annotated[Optional[list[str]], typer.Option(
        "--replay-user", help="Another user with replay's rights (repeatable): a client id is its user name, "
                              "so two replays at once need a user each.")] = None,
    client_certs: Annotated[bool, typer.Option(
        "--client-certs", help="Mutual TLS: a client certificate per user (clients/USER.crt, .key), required by "
                               "the broker and taken as the identity, instead of passwords.")] = False,
    host: Annotated[str, typer.Option("--host", help="The name or address clients connect to (in the certificate).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TLS listener port.")] = 8883,
    bind: Annotated[Optional[str], typer.Option("--bind", help="Address to listen on (default: --host; 0.0.0.0 for all).")] = None,
    extra_hosts: Annotated[Optional[list[str]], typer.Option(
        "--extra-host", help="Another name or address of the broker for its certificate (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the users, their topic rules and the files as JSON on stdout (no secrets).")] = False,
    rotate: Annotated[bool, typer.Option("--rotate", help="New CA, passwords and client certificates "
                                                          "(default: keep those already in DIR).")] = False,
    per_site: Annotated[bool, typer.Option(
        "--per-site", help="One broker per site of the plan's infrastructure (DIR/sites/SITE/), bridged along its "
                           "links, all signed by one CA in DIR. A site given --site-host listens on --port; "
                           "sites left on 127.0.0.1 on --port + i (i: the site's index), so they can share a machine.")] = False,
    controller_site: Annotated[Optional[str], typer.Option(
        "--controller-site", help="With --per-site: the site the controller runs at (default: the cloud, the "
                                  "first site of the highest tier).")] = None,
    site_hosts: Annotated[Optional[list[str]], typer.Option(
        "--site-host", help="With --per-site: SITE=HOST, the name or address of a site's broker (repeatable; "
                            "default 127.0.0.1).")] = None,
    outage_budget: Annotated[float, typer.Option(
        "--outage-budget", min=0.001, help="With --per-site: seconds of a link outage its bridge queues at "
                                           "the link's full bandwidth.")] = 60.0,
) -> None:
    """Write a TLS Mosquitto configuration with a password and ACL section for the controller, replay and each agent."""
    from jellybean.agents import topics
    from jellybean.agents.broker import (
        AgentGrant,
        grants_from_plan,
        replay_rules,
        stock_mosquitto_problems,
        write_broker_config,
    )

    grants: dict[str, AgentGrant] = {}
    if plan_file is not None:
        from jellybean.agents.deployment import resolve_inputs
        from jellybean.planner.render import read_plan

        plan = read_plan(plan_file)
        inputs = resolve_inputs(plan, plan_file, {"workflow": workflow, "zoo": zoo, "infrastructure": infrastructure})
        grants = grants_from_plan(plan, inputs.infrastructure, workflow=inputs.workflow, zoo=inputs.zoo)
    elif infrastructure is not None or workflow is not None or zoo is not None:
        raise JellyBeanError("--infrastructure, --workflow and --zoo are read only with --plan; give --plan PLAN.yaml too")
    by_site = {g.site: g for g in grants.values()}
    for spec in agents or []:
        # NAME, or NAME@SITE for another device at a site: it may do what that site's agent may.
        name, _, site = spec.partition("@")
        site = site or name
        if name in grants:
            raise JellyBeanError(f"--agent {spec}: the plan already has an agent named '{name}'")
        peer = by_site.get(site)
        grants[name] = AgentGrant(site=site, publish_sites=peer.publish_sites if peer else (),
                                  sink_topics=peer.sink_topics if peer else (), ack_sites=peer.ack_sites if peer else ())
    if not grants:
        raise JellyBeanError("no agents: give --agent NAME (repeatable) or --plan PLAN.yaml")
    for name in sinks or []:
        if name not in grants:
            raise JellyBeanError(f"--sink {name}: no such agent (agents: {', '.join(grants)}); add it with --agent")
        grants[name] = AgentGrant(site=grants[name].site, publish_sites=grants[name].publish_sites,
                                  sink_topics=(*grants[name].sink_topics, topics.sink("#")),
                                  ack_sites=grants[name].ack_sites)

    if per_site:
        _write_per_site(directory, grants, plan_file, inputs if plan_file is not None else None, host=host, port=port,
                        bind=bind, extra_hosts=extra_hosts, client_certs=client_certs, replay_users=replay_users,
                        rotate=rotate, controller_site=controller_site, site_hosts=site_hosts,
                        outage_budget=outage_budget, as_json=as_json)
        return
    if controller_site is not None or site_hosts:
        raise JellyBeanError("--controller-site and --site-host are read only with --per-site; add --per-site")
    cfg = write_broker_config(directory, agents=grants, host=host, port=port, bind=bind,
                              extra_hosts=tuple(extra_hosts or ()), client_certs=client_certs,
                              extra_users={name: replay_rules() for name in replay_users or []}, rotate=rotate)

    if as_json:
        typer.echo(json.dumps({
            "directory": str(cfg.dir), "url": cfg.url, "ca": str(cfg.ca), "conf": str(cfg.conf),
            "client_certs": client_certs,
            "users": {user: {"publish": [r.topic for r in rules if r.may_write],
                             "read": [r.topic for r in rules if r.may_read]} for user, rules in cfg.rules.items()},
            "warnings": list(stock_mosquitto_problems(cfg.conf))}, indent=2))
        return
    table = Table(title=f"broker users in {cfg.dir}", title_justify="left")
    for col in ("user", "may publish to", "may read"):
        table.add_column(col, overflow="fold")
    for user, rules in cfg.rules.items():
        table.add_row(user, "\n".join(r.topic for r in rules if r.may_write),
                      "\n".join(r.topic for r in rules if r.may_read))
    console.print(fit(table))
    address = cfg.url.removeprefix("mqtts://")
    if client_certs:
        console.print(f"broker URL  {cfg.url}  (mutual TLS: each client gives --cert {cfg.dir}/clients/USER.crt "
                      "--key .../USER.key)", highlight=False)
        console.print(f"identities  {cfg.dir / 'clients'}/USER.crt, USER.key  (secret; give each party its own)",
                      highlight=False)
    else:
        console.print(f"broker URL  {cfg.url}  (each client: --broker mqtts://USER@{address} --password-file "
                      "USER.password, or the password in $JELLYBEAN_BROKER_PASSWORD)", highlight=False)
        console.print(f"passwords   {cfg.dir / 'clients'}/USER.password  (secret; give each party its own; all of "
                      f"them: {cfg.dir / 'credentials.yaml'})", highlight=False)
    console.print(f"CA          {cfg.ca}  (give it to every client)", highlight=False)
    console.print(f"run it      jellybean broker run {cfg.dir}   or   mosquitto -c {cfg.conf}", highlight=False)
    for problem in stock_mosquitto_problems(cfg.conf):
        err_console.print(f"[yellow]warning:[/] {problem}: `mosquitto -c {cfg.conf}` started by root would fail "
                          "(`jellybean broker run` runs it as root instead); put DIR where user mosquitto may enter, "
                          "e.g. /etc/mosquitto/jellybean", highlight=False)


def _write_per_site(directory: Path, grants, plan_file, inputs, *, host, port, bind, extra_hosts, client_certs,
                    replay_users, rotate, controller_site, site_hosts, outage_budget, as_json) -> None:
    """`broker config --per-site`: a broker per site, bridged (jellybean.agents.bridges)."""
    from jellybean.agents.bridges import unreachable_from_controller
    from jellybean.agents.broker import replay_rules, write_site_configs

    if inputs is None:
        raise JellyBeanError("--per-site needs the infrastructure: give --plan PLAN.yaml")
    if client_certs:
        raise JellyBeanError("--per-site bridges authenticate with passwords; drop --client-certs")
    if bind is not None or extra_hosts or host != "127.0.0.1":
        raise JellyBeanError("--per-site takes each site's address from --site-host SITE=HOST; drop --host, --bind "
                             "and --extra-host")
    hosts = {}
    for spec in site_hosts or []:
        site, sep, name = spec.partition("=")
        if not sep or not site or not name:
            raise JellyBeanError(f"--site-host {spec}: give SITE=HOST, e.g. --site-host hub=10.0.0.2")
        hosts[site] = name
    cfg = write_site_configs(directory, inputs.infrastructure, agents=grants, controller_site=controller_site,
                             hosts=hosts, port=port, outage_budget_s=outage_budget, rotate=rotate,
                             extra_users={name: replay_rules() for name in replay_users or []})
    for site in unreachable_from_controller(inputs.infrastructure, cfg.controller_site):
        err_console.print(f"[yellow]warning:[/] no chain of links joins {site} to the controller's site "
                          f"{cfg.controller_site}: its agents cannot be reached through the bridges", highlight=False)
    if as_json:
        typer.echo(json.dumps({
            "directory": str(cfg.dir), "ca": str(cfg.dir / "ca.crt"), "controller_site": cfg.controller_site,
            "sites": {s: {"url": c.url, "conf": str(c.conf), "users": list(c.rules)} for s, c in cfg.sites.items()},
            "bridges": {b.name: {"from": b.local, "to": b.remote, "bandwidth_mbps": b.bandwidth_mbps,
                                 "max_queued_bytes": b.queue_bytes(outage_budget),
                                 "out": list(b.patterns("out")), "in": list(b.patterns("in"))} for b in cfg.bridges},
        }, indent=2))
        return
    table = Table(title=f"site brokers in {cfg.dir}/sites (controller at {cfg.controller_site})", title_justify="left")
    for col in ("site", "URL", "users"):
        table.add_column(col, overflow="fold")
    for site, c in cfg.sites.items():
        table.add_row(site, c.url, ", ".join(c.rules))
    console.print(fit(table))
    table = Table(title="bridges (initiated by the first site; out = towards the second)", title_justify="left")
    for col in ("bridge", "out", "in"):
        table.add_column(col, overflow="fold")
    for b in cfg.bridges:
        table.add_row(f"{b.local} -> {b.remote}", "\n".join(b.patterns("out")), "\n".join(b.patterns("in")))
    console.print(fit(table))
    console.print(f"CA          {cfg.dir / 'ca.crt'}  (give it to every client)", highlight=False)
    console.print(f"run a site  jellybean broker run {cfg.dir}/sites/SITE   (on that site's machine)", highlight=False)


def _stop_on_sigterm() -> None:
    """SIGTERM (systemd, docker stop) stops the broker as Ctrl-C does."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@broker_app.command("run")
def run(
    directory: Annotated[Optional[Path], typer.Argument(
        metavar="DIR", help="A directory `jellybean broker config` wrote; without it, a plain anonymous "
                              "broker on 127.0.0.1 for one machine.")] = None,
    embedded: Annotated[bool, typer.Option(
        "--embedded", help="The built-in amqtt broker (anonymous, plain, loopback) instead of Mosquitto.")] = False,
    port: Annotated[Optional[int], typer.Option(
        "--port", min=1, max=65535, help="Port of the plain broker (default 1883); with DIR it is the config's.")] = None,
) -> None:
    """Run a broker in the foreground until Ctrl-C: Mosquitto with DIR/mosquitto.conf, or a plain local one."""
    from jellybean.agents.broker import EmbeddedBroker, LocalBroker, MosquittoBroker, find_mosquitto

    broker: LocalBroker
    if embedded:
        if directory is not None:
            # Running it would silently drop the TLS, passwords and ACL that DIR configures.
            raise JellyBeanError(f"--embedded runs an anonymous plain broker and cannot use {directory}'s TLS, "
                                 "passwords and ACL; run Mosquitto with DIR, or --embedded without DIR")
        broker = EmbeddedBroker(port or 1883)
    else:
        conf = None
        if directory is not None:
            conf = directory / "mosquitto.conf"
            if not conf.is_file():
                raise JellyBeanError(f"{conf} does not exist; write the configuration with "
                                     f"`jellybean broker config {directory} --agent NAME ...` first")
        if find_mosquitto() is None:
            raise JellyBeanError("mosquitto is not installed (not on PATH nor in /usr/sbin); install it "
                                 "(`apt-get install mosquitto`) or run the embedded broker with --embedded")
        broker = MosquittoBroker(conf, port if conf is not None else (port or 1883), workdir=directory,
                                 capture_log=False)
    _stop_on_sigterm()
    broker.start()
    try:
        broker.wait_ready()
        err_console.print(f"{broker.kind} broker ready at {broker.url}; Ctrl-C stops it", highlight=False)
        if isinstance(broker, MosquittoBroker) and broker.runs_as_root_because:
            err_console.print(f"[yellow]warning:[/] mosquitto runs as root: {broker.runs_as_root_because}; move "
                              f"{directory or broker.workdir} where user mosquitto may enter to let it drop privileges",
                              highlight=False)
        if isinstance(broker, MosquittoBroker):
            code = broker.wait()
            if code != 0:
                raise JellyBeanError(f"mosquitto exited with code {code}; its messages are above")
        else:
            while True:
                time.sleep(1)
    except KeyboardInterrupt:
        err_console.print("stopping the broker", highlight=False)
    finally:
        broker.stop()
