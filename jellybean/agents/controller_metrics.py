"""The controller's Prometheus endpoint: the plan it runs, its agents, re-plans, and the traffic and
load the agents report to it over MQTT (for agents whose own endpoint a scraper cannot reach).

Everything is read from the controller when scraped; nothing here writes to it. Series:

- ``jellybean_controller_plan_info{plan,strategy,solver_status}`` 1, the plan being run
- ``jellybean_controller_assignment_version`` the version last published to the agents
- ``jellybean_controller_plan_cost_dollars_per_hour{part=total|compute|network}``
- ``jellybean_controller_replans_total``, ``jellybean_controller_replan_failures_total``
- ``jellybean_controller_agents{state=online|offline}``, ``jellybean_controller_agent_online{agent,site}``,
  ``jellybean_controller_agent_heartbeat_age_seconds{agent,site}``
- ``jellybean_controller_site_lost{site}`` 1 for each planned site without an agent (re-planned around)
- ``jellybean_controller_broker_connected``, ``jellybean_controller_broker_connects_total``
- ``jellybean_controller_operator_items_per_second{operator}`` arriving at the current plan's
  agents (their last metrics interval), ``jellybean_controller_operator_planned_items_per_second{operator}``
- ``jellybean_controller_capacity_factor{site,operator}`` with ``--adapt``: what a site's workers of
  an operator deliver against their profile, as the adapter plans them (`jellybean.adapt.derate`;
  below 1 when a box serves less than its profile while backlogged)
- ``jellybean_controller_agent_items_per_second{agent,operator}`` (messages),
  ``..._agent_served_per_second`` (the plan's items: frames, crops), ``..._agent_queue_depth``,
  ``..._agent_dropped_total``, ``..._agent_latency_ms{agent,operator,quantile}`` from each online
  agent's last metrics message
- ``jellybean_controller_link_bytes_total{agent,from_site,to_site}`` bytes each agent sent to
  another site (or ``sink``) since it started; ``rate()`` of it is the link's bytes/s
- ``jellybean_controller_link_planned_bytes_per_second{from_site,to_site}`` and
  ``jellybean_controller_link_bandwidth_bytes_per_second{from_site,to_site}`` from the plan
"""

from __future__ import annotations

import time
from typing import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

PREFIX = "jellybean_controller_"
# A scrape waits at most this long for the controller's lock (held through a re-plan) before it
# leaves out the one figure that needs it (the measured load).
LOCK_WAIT_S = 1.0


class ControllerCollector(Collector):
    """Collects a `Controller`'s figures at scrape time (duck-typed: no import of the controller)."""

    def __init__(self, controller) -> None:
        self.controller = controller

    def collect(self) -> Iterator:
        c = self.controller
        plan = c.current.plan
        # Copies: the dicts change on the MQTT thread; a re-plan holds the lock for seconds.
        agents = dict(c.agents)
        now, wall = time.monotonic(), time.time()

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(PREFIX + name, doc, labels=list(labels))

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> CounterMetricFamily:
            return CounterMetricFamily(PREFIX + name, doc, labels=list(labels))

        info = gauge("plan_info", "the plan being run (1)", ("plan", "strategy", "solver_status"))
        info.add_metric([plan.name, plan.strategy, str(plan.solver.status)], 1)
        version = gauge("assignment_version", "assignment version last published to the agents")
        version.add_metric([], c.version)
        cost = gauge("plan_cost_dollars_per_hour", "the current plan's cost, $/h", ("part",))
        for part in ("total", "compute", "network"):
            cost.add_metric([part], getattr(plan.cost, part))
        replans = counter("replans", "re-plans made (an agent lost or back, or the load shifted)")
        replans.add_metric([], c.replans)
        failures = counter("replan_failures", "re-plans that found no plan (the current plan stayed)")
        failures.add_metric([], getattr(c, "replan_failures", 0))
        yield from (info, version, cost, replans, failures)

        states = gauge("agents", "agents known, by state", ("state",))
        online = sum(1 for s in agents.values() if s.online)
        states.add_metric(["online"], online)
        states.add_metric(["offline"], len(agents) - online)
        up = gauge("agent_online", "1 while the agent is heard from, 0 once it is lost", ("agent", "site"))
        age = gauge("agent_heartbeat_age_seconds", "seconds since the agent was last heard from", ("agent", "site"))
        for name, s in sorted(agents.items()):
            up.add_metric([name, s.announce.site], 1 if s.online else 0)
            age.add_metric([name, s.announce.site], max(0.0, now - s.last_seen))
        lost = gauge("site_lost", "1 for a planned site without an online agent (planned around)", ("site",))
        for site in sorted({w.location for w in c.original.plan.workers if w.count > 0}):
            lost.add_metric([site], 1 if site in c.lost else 0)
        connected = gauge("broker_connected", "1 while connected to the broker")
        connected.add_metric([], 1 if c.link.connected else 0)
        connects = counter("broker_connects", "connections made to the broker (1 + reconnects)")
        connects.add_metric([], c.link.connects)
        yield from (states, up, age, lost, connected, connects)

        planned = gauge("operator_planned_items_per_second", "items/s the current plan serves per operator",
                        ("operator",))
        for op, rate in sorted(plan.predicted.throughput.items()):
            planned.add_metric([op], rate)
        yield planned
        if c._lock.acquire(timeout=LOCK_WAIT_S):
            try:
                measured = c.measured_load()
            finally:
                c._lock.release()
            load = gauge("operator_items_per_second",
                         "items/s arriving per operator at the agents running the current plan", ("operator",))
            for op, rate in sorted(measured.items()):
                load.add_metric([op], rate)
            yield load

        adapter = getattr(c, "adapter", None)
        if adapter is not None:
            factor = gauge("capacity_factor", "what a site's workers of an operator deliver against their profile, "
                           "as --adapt plans them", ("site", "operator"))
            for (site, op), f in sorted(adapter.derating.factors.items()):
                factor.add_metric([site, op], f)
            yield factor

        per = ("agent", "operator")
        items = gauge("agent_items_per_second", "items/s an agent processed (its last metrics interval)", per)
        served = gauge("agent_served_per_second", "the plan's items (frames, crops) an agent served per second "
                       "(its last metrics interval)", per)
        queue = gauge("agent_queue_depth", "items waiting at an agent", per)
        dropped = counter("agent_dropped", "items an agent dropped since it started", per)
        latency = gauge("agent_latency_ms", "an agent's processing latency percentiles, ms", per + ("quantile",))
        sent = counter("link_bytes", "bytes an agent sent to another site (or the sink) since it started",
                       ("agent", "from_site", "to_site"))
        for name, s in sorted(agents.items()):
            m = s.metrics
            if m is None:
                continue
            for to, n in sorted(m.bytes_out.items()):
                if to != m.site:   # data kept at a site crosses no link
                    sent.add_metric([name, m.site, to], n)
            if not s.online or wall - m.sent_at > 3 * m.interval_s:
                continue           # a lost agent's last figures are not its current ones
            for o in m.operators:
                items.add_metric([name, o.operator], o.items_per_s)
                served.add_metric([name, o.operator], o.served_per_s)
                queue.add_metric([name, o.operator], o.queue_depth)
                dropped.add_metric([name, o.operator], o.dropped)
                for q, v in sorted(o.latency_ms.items()):
                    latency.add_metric([name, o.operator, f"{int(q[1:]) / 100:g}"], v)
        yield from (items, served, queue, dropped, latency, sent)

        planned_bytes = gauge("link_planned_bytes_per_second", "bytes/s the current plan routes over a link",
                              ("from_site", "to_site"))
        bandwidth = gauge("link_bandwidth_bytes_per_second", "a link's bandwidth, bytes/s", ("from_site", "to_site"))
        for link in plan.links:
            planned_bytes.add_metric([link.from_, link.to], link.kb_per_s * 1024)
            if link.bandwidth_mbps:
                bandwidth.add_metric([link.from_, link.to], link.bandwidth_mbps * 1e6 / 8)
        yield from (planned_bytes, bandwidth)


def controller_registry(controller) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(ControllerCollector(controller))
    return registry
