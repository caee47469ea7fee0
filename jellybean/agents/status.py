"""`jellybean status`: what runs on a broker, read from what the controller and agents publish.

Nothing here writes to the broker. A short-lived client subscribes to the retained state (each
agent's announce and status, its assignment, the controller's routes with the plan in them) and to
the live heartbeats and metrics, and collects until every agent is settled:

- online: it was heard (heartbeat or metrics) and sent two metrics rounds, so that the bytes it
  sent to each site are a rate (the difference of two counters over the agent's own clock);
- offline: its retained status says so (its last will, or a clean stop) and it was not heard;
- silent: nothing from it for `SILENT_S`, the controller's own "missed heartbeats" bound.

A broker with no retained state and no agent heard within `SILENT_S` runs nothing. The whole
collection is bounded by `wait`.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jellybean.agents import topics
from jellybean.agents.items import MessageError
from jellybean.agents.messages import Announce, Assignment, Heartbeat, Metrics, Routes, Status, parse_message
from jellybean.errors import JellyBeanError
from jellybean.spec.plan import Plan

# The controller's defaults: agents heartbeat every HEARTBEAT_S, and one not heard for
# MISSED_HEARTBEATS of them (plus half a second) is lost.
HEARTBEAT_S = 1.0
MISSED_HEARTBEATS = 3
SILENT_S = MISSED_HEARTBEATS * HEARTBEAT_S + 0.5
METRICS_ROUNDS = 2  # two metrics messages make the byte counters a rate
_LEAVES = ("announce", "status", "heartbeat", "metrics")


@dataclass
class _Heard:
    """What one agent said, as it arrived."""

    announce: Announce | None = None
    status: Status | None = None
    assignment: Assignment | None = None
    heartbeat: Heartbeat | None = None
    metrics: list[Metrics] = field(default_factory=list)   # the last METRICS_ROUNDS
    last_heard: float | None = None                          # monotonic, live messages only


@dataclass(frozen=True)
class TaskStatus:
    operator: str
    variant: str
    workers: int | None          # from the assignment; None when only metrics name the task
    items_per_s: float | None    # None: no metrics from the agent yet
    queue_depth: int | None
    p99_ms: float | None
    items_in: int | None
    items_out: int | None
    dropped: int | None


@dataclass(frozen=True)
class AgentStatus:
    name: str
    site: str
    hardware: str
    state: str                   # online | offline | silent
    assignment_version: int | None   # the version the agent runs (its heartbeat or metrics)
    published_version: int | None    # the version the controller published for it (retained)
    tasks: tuple[TaskStatus, ...]
    errors: tuple[str, ...]      # tasks that could not start, and why (heartbeat)
    rejected: int | None         # malformed or unknown messages it dropped (metrics)
    pid: int | None
    host: str
    metrics_url: str | None

    @property
    def online(self) -> bool:
        return self.state == "online"


@dataclass(frozen=True)
class LinkStatus:
    from_: str
    to: str
    bytes_per_s: float | None    # measured; None when no agent at `from_` sent two metrics rounds
    bandwidth_mbps: float | None  # from the plan; None when unknown or unlimited
    planned_kb_per_s: float | None

    @property
    def mbps(self) -> float | None:
        return None if self.bytes_per_s is None else self.bytes_per_s * 8 / 1e6

    @property
    def utilisation(self) -> float | None:
        if self.mbps is None or not self.bandwidth_mbps:
            return None
        return self.mbps / self.bandwidth_mbps


@dataclass(frozen=True)
class DeploymentStatus:
    broker: str                  # without credentials
    plan: Plan | None            # the plan the controller last published (retained routes)
    version: int | None          # its assignment version
    agents: tuple[AgentStatus, ...]
    links: tuple[LinkStatus, ...]
    seconds: float               # how long the collection took
    complete: bool               # every agent settled before the wait ran out
    bridges: tuple[tuple[str, bool], ...] = ()   # site brokers' bridges: (name, up), as their notifications say

    @property
    def running(self) -> bool:
        return any(a.online for a in self.agents)

    def nothing_running(self) -> JellyBeanError:
        """The error to raise when no agent is online, naming what the broker still holds."""
        if not self.agents and self.plan is None:
            return JellyBeanError(
                f"nothing is running on {self.broker}: no controller has published a plan there and no agent was "
                f"heard within {self.seconds:.1f} s; start one with `jellybean up EXAMPLE_DIR` or "
                f"`jellybean deploy PLAN --broker {self.broker}`, or check the broker URL")
        held = []
        if self.plan is not None:
            held.append(f"plan {self.plan.name} version {self.version}")
        if self.agents:
            held.append("agent(s) " + ", ".join(f"{a.name} ({a.state})" for a in self.agents))
        return JellyBeanError(
            f"nothing is running on {self.broker}: it holds the retained state of a deployment ({'; '.join(held)}) "
            f"but no agent was heard within {self.seconds:.1f} s; start the agents (`jellybean agent ...`) or "
            "the whole deployment again (`jellybean up` / `jellybean deploy`)")

    def to_json(self) -> dict[str, Any]:
        plan = None
        if self.plan is not None:
            c = self.plan.cost
            plan = {"name": self.plan.name, "strategy": self.plan.strategy, "version": self.version,
                    "cost": {"compute": c.compute, "network": c.network, "total": c.total},
                    "variants": dict(self.plan.variants)}
        return {
            "broker": self.broker,
            "running": self.running,
            "complete": self.complete,
            "seconds": round(self.seconds, 3),
            "plan": plan,
            "agents": [{
                "name": a.name, "site": a.site, "hardware": a.hardware, "state": a.state,
                "assignment_version": a.assignment_version, "published_version": a.published_version,
                "tasks": [{"operator": t.operator, "variant": t.variant, "workers": t.workers,
                           "items_per_s": t.items_per_s, "queue_depth": t.queue_depth, "p99_ms": t.p99_ms,
                           "items_in": t.items_in, "items_out": t.items_out, "dropped": t.dropped}
                          for t in a.tasks],
                "errors": list(a.errors), "rejected": a.rejected, "pid": a.pid, "host": a.host,
                "metrics_url": a.metrics_url,
            } for a in self.agents],
            "links": [{"from": link.from_, "to": link.to, "bytes_per_s": link.bytes_per_s, "mbps": link.mbps,
                       "bandwidth_mbps": link.bandwidth_mbps, "utilisation": link.utilisation,
                       "planned_kb_per_s": link.planned_kb_per_s} for link in self.links],
            "bridges": [{"name": name, "up": up} for name, up in self.bridges],
        }


class StatusCollector:
    """Subscribes, collects what the deployment publishes, and summarises it (read-only)."""

    def __init__(self, url: str, *, ca: Path | None = None) -> None:
        from jellybean.agents.broker import CONTROLLER, parse_broker_url
        from jellybean.agents.transport import MqttLink

        address = parse_broker_url(url)
        if address.username == CONTROLLER:
            raise JellyBeanError(
                f"status would connect to {address.url} as user '{CONTROLLER}', and a JellyBean broker takes a user's "
                "name as its client id, so the running controller would be disconnected; connect as a user of its "
                "own, e.g. one made with `jellybean broker config DIR ... --replay-user monitor` "
                "(--broker mqtts://monitor@HOST:PORT --password-file DIR/clients/monitor.password)")
        self.address = address
        self._heard: dict[str, _Heard] = {}
        self._routes: Routes | None = None
        self._bridges: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._arrived = threading.Event()
        # A client id of its own (brokers with users replace it by the user name) and a clean
        # session that nothing is queued for: status leaves no trace on the broker.
        self.link = MqttLink(url, f"jb-status-{os.getpid()}-{secrets.token_hex(3)}", ca=ca, clean=True,
                             reconnect=False)

    # -- messages --------------------------------------------------------------------------------
    def _agent(self, name: str) -> _Heard:
        return self._heard.setdefault(name, _Heard())

    def _on_agent(self, topic: str, payload: bytes) -> None:
        parsed = topics.parse_agent_topic(topic)
        if parsed is None or not payload:
            return
        name, _leaf = parsed
        try:
            message = parse_message(payload, topic)
        except MessageError:
            return   # the agents' own problem; the controller logs it
        if getattr(message, "agent", name) != name:
            return
        with self._lock:
            heard = self._agent(name)
            if isinstance(message, Announce):
                heard.announce = message
            elif isinstance(message, Status):
                heard.status = message
            elif isinstance(message, Heartbeat):
                heard.heartbeat, heard.last_heard = message, time.monotonic()
            elif isinstance(message, Metrics):
                heard.metrics = [*heard.metrics, message][-METRICS_ROUNDS:]
                heard.last_heard = time.monotonic()
        self._arrived.set()

    def _on_assignment(self, topic: str, payload: bytes) -> None:
        if not payload:
            return
        try:
            message = parse_message(payload, topic, Assignment)
        except MessageError:
            return
        if topic != topics.assignment(message.agent):
            return
        with self._lock:
            self._agent(message.agent).assignment = message
        self._arrived.set()

    def _on_routes(self, topic: str, payload: bytes) -> None:
        if not payload:
            return
        try:
            message = parse_message(payload, topic, Routes)
        except MessageError:
            return
        with self._lock:
            self._routes = message
        self._arrived.set()

    # -- collecting ------------------------------------------------------------------------------
    def _on_link_state(self, topic: str, payload: bytes) -> None:
        bridge = topics.parse_link_state(topic)
        if bridge is not None and payload in (b"0", b"1"):
            with self._lock:
                self._bridges[bridge] = payload == b"1"

    def collect(self, wait: float = 10.0) -> DeploymentStatus:
        """Collect for at most `wait` seconds (connecting included) and summarise."""
        started = time.monotonic()
        deadline = started + wait
        # Each leaf on its own: a user allowed to read some of them (e.g. replay's: routes and
        # metrics) still gets those.
        for leaf in _LEAVES:
            self.link.subscribe(topics.agent("+", leaf), self._on_agent, qos=0)
        self.link.subscribe(topics.assignment("+"), self._on_assignment, qos=0)
        self.link.subscribe(topics.ROUTES, self._on_routes, qos=0)
        self.link.subscribe(topics.link_state("+"), self._on_link_state, qos=0)
        self.link.start()
        try:
            self.link.wait_connected(max(0.1, wait))
            since = time.monotonic()
            while True:
                now = time.monotonic()
                if self._settled(now - since) or now >= deadline:
                    break
                self._arrived.wait(min(0.2, max(0.0, deadline - now)))
                self._arrived.clear()
        finally:
            self.link.stop()
        now = time.monotonic()
        return self._summary(now - started, complete=self._settled(now - since))

    def _settled(self, listened: float) -> bool:
        with self._lock:
            if not self._heard:
                return listened >= SILENT_S
            return all(self._state(h, listened) is not None for h in self._heard.values())

    @staticmethod
    def _state(h: _Heard, listened: float) -> str | None:
        """online / offline / silent once known, None while it is still worth waiting."""
        if h.last_heard is not None:
            return "online" if len(h.metrics) >= METRICS_ROUNDS else None
        if h.status is not None and h.status.state == "offline":
            return "offline"
        return "silent" if listened >= SILENT_S else None

    # -- summary ---------------------------------------------------------------------------------
    def _summary(self, seconds: float, complete: bool) -> DeploymentStatus:
        with self._lock:
            heard = dict(self._heard)
            routes = self._routes
            bridges = tuple(sorted(self._bridges.items()))
        plan = None
        if routes is not None and routes.plan_doc is not None:
            try:
                plan = Plan.model_validate(routes.plan_doc)
            except ValueError:
                plan = None   # a plan of another version of JellyBean: the rest still shows
        agents = tuple(_agent_status(name, h) for name, h in sorted(heard.items()))
        return DeploymentStatus(broker=self.address.url, plan=plan, version=routes.version if routes else None,
                                agents=agents, links=_links(heard, plan), seconds=seconds, complete=complete,
                                bridges=bridges)


def _agent_status(name: str, h: _Heard) -> AgentStatus:
    last = h.metrics[-1] if h.metrics else None
    if h.last_heard is not None:
        state = "online"
    elif h.status is not None and h.status.state == "offline":
        state = "offline"
    else:
        state = "silent"
    by_op = {o.operator: o for o in last.operators} if last else {}
    planned = list(h.assignment.tasks) if h.assignment else []
    tasks = []
    for t in planned:
        tasks.append(_task(t.operator, t.variant, t.workers, by_op.pop(t.operator, None), last is not None))
    for op, o in sorted(by_op.items()):   # measured but not (or no longer) assigned: items it still held
        tasks.append(_task(op, o.variant, None, o, True))
    version = None
    if h.heartbeat is not None:
        version = h.heartbeat.assignment_version
    elif last is not None:
        version = last.assignment_version
    a = h.announce
    return AgentStatus(
        name=name, site=a.site if a else (last.site if last else (h.assignment.site if h.assignment else "")),
        hardware=a.hardware if a else "", state=state, assignment_version=version,
        published_version=h.assignment.version if h.assignment else None, tasks=tuple(tasks),
        errors=tuple(h.heartbeat.errors) if h.heartbeat and state == "online" else (),
        rejected=last.rejected if last else None, pid=(a.pid or None) if a else None, host=a.host if a else "",
        metrics_url=a.metrics_url if a else None)


def _task(operator: str, variant: str, workers: int | None, o, measured: bool) -> TaskStatus:
    if o is None:
        # The agent reports every operator it runs; none reported yet means none processed.
        zero = 0 if measured else None
        return TaskStatus(operator, variant, workers, 0.0 if measured else None, zero, None, zero, zero, zero)
    return TaskStatus(operator, o.variant or variant, workers, o.items_per_s, o.queue_depth,
                      o.latency_ms.get("p99"), o.items_in, o.items_out, o.dropped + o.duplicates)


def _links(heard: dict[str, _Heard], plan: Plan | None) -> tuple[LinkStatus, ...]:
    """Bytes/s between sites: each agent's bytes to another site over its last two metrics rounds,
    summed per (site, destination); every link of the plan is listed, measured or not."""
    rates: dict[tuple[str, str], float] = {}
    measured_sites: set[str] = set()
    for h in heard.values():
        if h.last_heard is None or len(h.metrics) < METRICS_ROUNDS:
            continue
        m0, m1 = h.metrics[-2], h.metrics[-1]
        dt = m1.sent_at - m0.sent_at
        if dt <= 0:
            continue
        measured_sites.add(m1.site)
        for to, n in m1.bytes_out.items():
            if to in (m1.site, "sink"):
                continue   # inside a site, or to the workflow's output: no link
            delta = n - m0.bytes_out.get(to, 0)
            if delta < 0:
                continue   # the agent restarted between the two rounds
            rates[(m1.site, to)] = rates.get((m1.site, to), 0.0) + delta / dt
    out = []
    planned = {(link.from_, link.to): link for link in plan.links} if plan else {}
    for key in sorted(set(planned) | set(rates)):
        link = planned.get(key)
        rate = rates.get(key, 0.0 if key[0] in measured_sites else None)
        out.append(LinkStatus(from_=key[0], to=key[1], bytes_per_s=rate,
                              bandwidth_mbps=link.bandwidth_mbps if link else None,
                              planned_kb_per_s=link.kb_per_s if link else None))
    return tuple(out)


def collect_status(url: str, *, ca: Path | None = None, wait: float = 10.0) -> DeploymentStatus:
    """What runs on the broker at `url` (credentials resolved), collected for at most `wait` s."""
    if wait <= 0:
        raise JellyBeanError(f"--wait {wait:g}: give a positive number of seconds (two metrics rounds take about "
                             "4 s)")
    return StatusCollector(url, ca=ca).collect(wait)
