"""A Mosquitto per site, bridged along the infrastructure's links: what `jellybean up --isolate` runs.

- With namespaces (root): the sites are a `SiteNetwork` with a LAN per site. Each site's broker
  listens on its site address inside its namespace; the bridges between them cross only the
  shaped links. Agents run inside their site's namespace and connect to their own site's broker.
  The controller and the replay stay in this process's namespace and reach a site's broker over
  its LAN: the controller at its own site's broker, each camera at the broker of the site it is at.
- Without them: the same brokers and bridges on loopback, one port per site. Nothing is shaped
  and nothing is measured on a wire, and `fallback` says why.

Every broker is started empty (an earlier run's database is removed) and stopped by its PID.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from jellybean.agents.bridges import DEFAULT_OUTAGE_BUDGET_S
from jellybean.agents.broker import (
    AgentGrant,
    MosquittoBroker,
    Rule,
    SiteConfigs,
    free_port,
    grants_from_plan,
    write_site_configs,
)
from jellybean.errors import JellyBeanError
from jellybean.sites.netns import LinkCounters, SiteNetwork, available

if TYPE_CHECKING:
    from jellybean.agents.deployment import Deployment

log = logging.getLogger(__name__)
STORE_USER = "store-monitor"  # reads each site broker's $SYS store counters, nothing else
STORE_COUNT = "$SYS/broker/store/messages/count"
SITE_PORT = 8883  # every site's broker, each in its own namespace at its own address


@dataclass(eq=False)
class SiteBrokers:
    """Brokers (and, with ``isolate``, namespaces) for the sites of ``deployment``'s infrastructure.

    ``agents``: agent name -> its site (the agents `spawn_agents` starts). Use as a context manager,
    or `start()` then `stop()`.
    """

    deployment: Deployment
    directory: Path
    agents: Mapping[str, str]
    isolate: bool = True
    controller_site: str | None = None
    outage_budget_s: float = DEFAULT_OUTAGE_BUDGET_S
    subnet: str = "10.213.0.0/16"  # the sites' and links' addresses (two site networks at once need two)

    network: SiteNetwork | None = field(init=False, default=None)
    configs: SiteConfigs | None = field(init=False, default=None)
    brokers: dict[str, MosquittoBroker] = field(init=False, default_factory=dict)
    fallback: str = field(init=False, default="")
    _last_rates: tuple[float, dict[str, LinkCounters]] | None = field(init=False, default=None, repr=False)
    _held: dict[str, int] = field(init=False, default_factory=dict, repr=False)
    _store_links: list = field(init=False, default_factory=list, repr=False)

    def start(self) -> SiteBrokers:
        if self.isolate:
            ok, why = available()
            if not ok:
                self.isolate, self.fallback = False, why
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        infra = self.deployment.inputs.infrastructure
        plan = self.deployment.plan
        by_site = grants_from_plan(plan, infra, workflow=self.deployment.inputs.workflow, zoo=self.deployment.inputs.zoo)
        grants = {}
        for name, site in self.agents.items():
            peer = by_site.get(site)
            if peer is None:
                raise JellyBeanError(f"agent '{name}' serves site '{site}', where plan '{plan.name}' runs no workers")
            grants[name] = AgentGrant(site=site, publish_sites=peer.publish_sites, sink_topics=peer.sink_topics,
                                      ack_sites=peer.ack_sites)
        names = [s.name for s in infra.sites]
        if self.isolate:
            self.network = SiteNetwork(infra, subnet=self.subnet, lan=True).create()
            hosts = {s: self.network.address(s) for s in names}
            ports = {s: SITE_PORT for s in names}
        else:
            hosts, ports = {}, {s: free_port() for s in names}
        self.configs = write_site_configs(self.directory, infra, agents=grants, controller_site=self.controller_site,
                                          hosts=hosts, ports=ports, outage_budget_s=self.outage_budget_s,
                                          extra_users={STORE_USER: (Rule("read", STORE_COUNT),)})
        for site in names:
            site_dir = self.directory / "sites" / site
            (site_dir / "data" / "mosquitto.db").unlink(missing_ok=True)  # start empty, as `up` always does
            wrap = ["ip", "netns", "exec", self.network.namespace(site)] if self.network else []
            self.brokers[site] = MosquittoBroker(self.configs.sites[site].conf, workdir=site_dir, wrap=wrap).start()
        for broker in self.brokers.values():
            broker.wait_ready()
        self._watch_stores()

    def _watch_stores(self) -> None:
        """Each broker's count of the messages it holds (retained ones, and queues of absent
        persistent clients: a cut link's bridge queue), as its $SYS says every 2 s."""
        from jellybean.agents.transport import MqttLink

        for site in self.brokers:
            link = MqttLink(self.url(site, STORE_USER), STORE_USER, ca=self.ca, clean=True)

            def on_count(topic: str, payload: bytes, site: str = site) -> None:
                try:
                    self._held[site] = int(payload)
                except ValueError:
                    log.info("dropped: %s at %s: not a count (%r)", topic, site, payload[:20])

            link.subscribe(STORE_COUNT, on_count, qos=0)
            link.start()
            self._store_links.append(link)

    def held(self) -> dict[str, int]:
        """Site -> messages its broker holds (last $SYS report; absent until the first)."""
        return dict(self._held)

    # -- who connects where ------------------------------------------------------------------------

    def _configs(self) -> SiteConfigs:
        if self.configs is None:
            raise JellyBeanError("the site brokers are not started")
        return self.configs

    @property
    def ca(self) -> Path:
        return self._configs().dir / "ca.crt"

    @property
    def controller_at(self) -> str:
        return self._configs().controller_site

    def url(self, site: str, user: str) -> str:
        """``user``'s URL (with its password) at ``site``'s broker."""
        return self._configs().sites[site].url_for(user)

    def agent_urls(self) -> dict[str, str]:
        """Agent name -> its URL at its own site's broker."""
        return {name: self.url(site, name) for name, site in self.agents.items()}

    @property
    def controller_url(self) -> str:
        return self.url(self.controller_at, "controller")

    def replay_urls(self) -> dict[str, str]:
        """Site -> the replay's URL there: cameras publish at the broker of the site they are at."""
        return {site: self.url(site, "replay") for site in self._configs().sites}

    def takeover_url(self, agent: str) -> str | None:
        """Where the controller resumes a lost agent's broker session: at the agent's own site's broker."""
        site = self.agents.get(agent)
        return self.url(site, agent) if site is not None else None

    def wraps(self) -> dict[str, list[str]]:
        """Site -> the command prefix that runs a process there (empty on loopback)."""
        if self.network is None:
            return {}
        return {site: ["ip", "netns", "exec", self.network.namespace(site)] for site in self.network.sites}

    def restart(self, site: str, timeout: float = 30.0) -> None:
        """Stop ``site``'s broker (it saves its sessions and queues) and start it again on the same
        configuration; its agents and the bridges at both ends reconnect on their own."""
        old = self.brokers[site]
        old.stop()
        self.brokers[site] = MosquittoBroker(old.config, workdir=old.workdir, wrap=old.wrap).start()
        self.brokers[site].wait_ready(timeout)

    def pids(self) -> dict[str, int]:
        return {site: b.pid for site, b in self.brokers.items() if b.pid is not None}

    # -- measuring ------------------------------------------------------------------------------

    def link_counters(self) -> dict[str, LinkCounters]:
        """Link name -> bytes each way on its wire so far (empty without namespaces: not measured)."""
        if self.network is None:
            return {}
        return {v.name: self.network.link_counters(v) for v in self.network.links}

    def wire_rates(self) -> dict[str, tuple[float, float, int | None]]:
        """Bridge name -> (KB/s towards its remote end, KB/s back) on the link's wire since the last
        call, and the messages the bridge's own (lower) end holds."""
        if self.network is None or self.configs is None:
            return {}
        now, counters = time.monotonic(), self.link_counters()
        last, self._last_rates = self._last_rates, (now, counters)
        if last is None or now <= last[0]:
            return {}
        seconds, rates = now - last[0], {}
        for b in self.configs.bridges:
            v = self.network.link((b.local, b.remote))
            before, after = last[1][v.name], counters[v.name]
            rates[b.name] = ((after.bytes_from(b.local) - before.bytes_from(b.local)) / 1024 / seconds,
                             (after.bytes_from(b.remote) - before.bytes_from(b.remote)) / 1024 / seconds,
                             self._held.get(b.local))
        return rates

    def wire_recorder(self) -> WireRecorder | None:
        """What records each link's wire bytes over a replay (None without namespaces: no wire)."""
        return WireRecorder(self) if self.network is not None else None

    # -- stopping ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every broker by its PID, then remove the namespaces (idempotent)."""
        links, self._store_links = self._store_links, []
        for link in links:
            link.stop()
        brokers, self.brokers = self.brokers, {}
        for broker in brokers.values():
            broker.stop()
        if self.network is not None:
            self.network.destroy()

    def __enter__(self) -> SiteBrokers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class LinkSample:
    """One look at a link's wire: seconds since the replay's clock started, whether it is up, and
    the bytes each way since then."""

    t: float
    link: str
    from_: str
    to: str
    up: bool
    bytes_forward: int
    bytes_backward: int
    held_from: int | None = None   # messages the from-site's broker held (its $SYS count)
    held_to: int | None = None


@dataclass(eq=False)
class WireRecorder:
    """Each link's wire over a replay: from the replay's clock start (`on_clock`) until `measured()`
    is called (after the results have drained), sampled every ``interval_s`` (state and bytes)."""

    sites: SiteBrokers
    interval_s: float = 0.5
    samples: list[LinkSample] = field(init=False, default_factory=list)
    _start: dict[str, LinkCounters] = field(init=False, default_factory=dict)
    _t0: float = field(init=False, default=0.0)
    _stop: threading.Event = field(init=False, default_factory=threading.Event)
    _thread: threading.Thread | None = field(init=False, default=None)

    def on_clock(self, event: str) -> None:
        if event == "start":
            self._t0 = time.monotonic()
            self._start = {name: c for name, (_, c) in self.sites.network.link_states().items()}
            self._thread = threading.Thread(target=self._sample_until_stopped, name="wire-sampler", daemon=True)
            self._thread.start()

    def _sample(self) -> dict[str, LinkCounters]:
        states = self.sites.network.link_states()
        held = self.sites.held()
        t = time.monotonic() - self._t0
        for name, (up, now) in states.items():
            before = self._start.get(name)
            self.samples.append(LinkSample(t, name, now.from_site, now.to_site, up,
                                           now.bytes_forward - (before.bytes_forward if before else 0),
                                           now.bytes_backward - (before.bytes_backward if before else 0),
                                           held.get(now.from_site), held.get(now.to_site)))
        return {name: c for name, (_, c) in states.items()}

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._sample()
            except JellyBeanError as exc:  # a namespace going away at shutdown: stop sampling
                log.info("wire sampling stopped: %s", exc)
                return

    def measured(self) -> list[WireBytes]:
        """Bytes each way per link since the clock started (a last sample is taken now)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        end = self._sample() if self._t0 else {}
        out = []
        for name, now in end.items():
            before = self._start.get(name)
            for a, b in ((now.from_site, now.to_site), (now.to_site, now.from_site)):
                sent = now.bytes_from(a) - (before.bytes_from(a) if before else 0)
                out.append(WireBytes(from_=a, to=b, bytes=sent, seconds=time.monotonic() - self._t0))
        return out


@dataclass(frozen=True)
class WireBytes:
    """Bytes sent from one site to the other over their link's veth (headers and control included)."""

    from_: str
    to: str
    bytes: int
    seconds: float
