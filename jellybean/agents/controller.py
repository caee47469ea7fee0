"""`jellybean deploy`: publish a plan's assignments, watch the agents, re-plan around failures.

State is what the agents say about themselves (announce, status, heartbeats, metrics); the only
writes are retained assignments, the sources' routes and model chunks.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Protocol

from jellybean.agents import topics
from jellybean.agents.deployment import (
    Deployment,
    build_assignments,
    build_routes,
    file_sha256,
    keyed_map,
    match_agents,
    placements,
    replan,
    source_fed,
)
from jellybean.agents.items import MessageError
from jellybean.agents.messages import (
    CHUNK_BYTES,
    Announce,
    Assignment,
    Heartbeat,
    Metrics,
    ModelRequest,
    OperatorMetrics,
    Status,
    encode_chunk,
    parse_message,
)
from jellybean.agents.takeover import SessionDrain
from jellybean.agents.transport import MqttLink
from jellybean.errors import JellyBeanError

log = logging.getLogger(__name__)
# Below this fraction of the planned load at every operator the sources feed, a deployment is idle
# (a replay ending, cameras off), not a load to plan for.
IDLE_FRACTION = 0.1
WILL_CONFIRM_S = 0.5
# `deploy --adapt` reads what a site served only from metrics intervals that began this long after
# the assignment was published, so that the figures are of the variants it assigned.
APPLY_S = 0.5


@dataclass
class AgentState:
    announce: Announce
    online: bool = True
    last_seen: float = field(default_factory=time.monotonic)
    heartbeat: Heartbeat | None = None
    metrics: Metrics | None = None
    # An "offline" status (a last will) waits WILL_CONFIRM_S: a broker shutting down sends every
    # client's will before it drops us too, and then the agents were not at fault.
    offline_since: float | None = None
    offline_connects: int = 0
    # Silent (no heartbeat) but not gone: its site may be cut off by a link outage, and it keeps
    # running its last assignment there. Re-planned away only after the outage budget.
    unreachable_since: float | None = None


@dataclass
class LinkStatus:
    """A site broker's bridge as its notifications say: up or not, since when (time.time())."""

    up: bool
    since: float


@dataclass
class Event:
    at: float
    what: str


class Adapting(Protocol):
    """What `deploy --adapt` plugs in (jellybean.adapt.runtime.Adapter): a decision from the
    measured load (operator -> items/s) when one is due, as the deployment to run."""

    decisions: list

    def step(self, measured: dict[str, float], now: float, measured_at: float | None = None) -> Deployment | None: ...

    def rebase(self, deployment: Deployment) -> None: ...


class Controller:
    """Deploys `deployment` and keeps it running."""

    def __init__(self, deployment: Deployment, broker: str, *, ca: Path | None = None, heartbeat_s: float = 1.0,
                 missed_heartbeats: int = 3, drop_after_ms: float = 5000.0, replan_time_limit: float = 20.0,
                 load_tolerance: float | None = None, load_sustain_s: float = 10.0,
                 grace_s: float | None = None, takeover: Callable[[str], str | None] | None = None,
                 on_event: Callable[[str], None] | None = None, outage_budget_s: float = 60.0,
                 deadline_ms: float | None = None, adapter: Adapting | None = None) -> None:
        self.original = deployment
        self.current = deployment
        self.heartbeat_s = heartbeat_s
        self.missed = missed_heartbeats
        # Edge autonomy: an agent that falls silent (its site's link to us may be down) keeps its
        # work for this long before a re-plan moves it; a last will (it died) re-plans at once.
        if not (outage_budget_s >= 0 and outage_budget_s < float("inf")):
            raise JellyBeanError(f"outage budget {outage_budget_s!r} s: give a finite number of seconds, 0 or more")
        self.outage_budget_s = outage_budget_s
        # Items that cannot make this end-to-end deadline are dropped early by the agents (None: off).
        self.deadline_ms = deadline_ms
        self.drop_after_ms = drop_after_ms
        self.replan_time_limit = replan_time_limit
        self.link = MqttLink(broker, "jb-controller", ca=ca, clean=True)
        # After our own (re)connect, agents get this long to be heard again before they count as
        # lost: when the broker itself went away, their wills and silence say nothing about them.
        self.grace_s = grace_s if grace_s is not None else missed_heartbeats * heartbeat_s + 2.0
        self._grace_until = 0.0
        # How to resume a lost agent's broker session (its URL by agent name), to send on what it
        # held: by default the controller's own URL where the broker has no users (any client id
        # may resume a session there), else nothing unless given.
        self.ca = ca
        self.takeover = takeover if takeover is not None else _anonymous_takeover(broker)
        self.drains: dict[str, SessionDrain] = {}
        self.agents: dict[str, AgentState] = {}
        self.site_agents: dict[str, list[str]] = {}
        self._assigned: dict[str, Assignment] = {}     # the last assignments published, per agent
        self.links: dict[str, LinkStatus] = {}   # bridge name -> state (brokers per site only)
        self.lost: set[str] = set()              # sites whose agent died
        # Re-planning for load (off when None): when the load the agents measure differs from the
        # current plan's by more than `load_tolerance` (relative) for `load_sustain_s`.
        self.load_tolerance = load_tolerance
        self.load_sustain_s = load_sustain_s
        self.load: dict[str, float] = {}         # operator -> measured / original plan's rate
        # While the load is off the plan: when that window opened, and each agent's counters then.
        self._load_window: tuple[float, dict[str, tuple[float, dict[str, float]]]] | None = None
        self._source_fed = source_fed(deployment.inputs)
        # `deploy --adapt`: decides what runs from the measured demand (replaces re-planning for load).
        self.adapter = adapter
        if adapter is not None and load_tolerance is not None:
            raise JellyBeanError("--adapt and --replan-on-load both follow the load; choose one")
        self.version = 0
        self._published_at = 0.0   # wall clock, as agents stamp metrics
        self._served_seen: dict[str, float] = {}   # agent -> its newest metrics `--adapt` took service from
        self.events: list[Event] = []
        self.replans = 0
        self.replan_failures = 0
        self.metrics_url: str | None = None
        self._metrics_server = None
        self._on_event = on_event
        self._lock = threading.RLock()
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._models = self._zoo_models()

    # -- bookkeeping -----------------------------------------------------------------------------
    def _event(self, what: str) -> None:
        self.events.append(Event(time.time(), what))
        log.info("%s", what)
        if self._on_event:
            self._on_event(what)

    def _zoo_models(self) -> dict[str, Path]:
        found = {}
        for zop in self.original.inputs.zoo.operators:
            for v in zop.variants:
                # A variant's parity models (ParM) are served like its own model.
                for name, sha in [(v.model, v.sha256)] + [(m.model, m.sha256) for m in v.parity]:
                    if name and (self.original.zoo_dir / name).is_file():
                        path = self.original.zoo_dir / name
                        found[sha or file_sha256(path)] = path
        return found

    def _next_version(self) -> int:
        self.version = max(self.version + 1, int(time.time()))
        return self.version

    # -- messages --------------------------------------------------------------------------------
    def _on_agent(self, topic: str, payload: bytes) -> None:
        parsed = topics.parse_agent_topic(topic)
        if parsed is None or not payload:
            return
        name, leaf = parsed
        try:
            message = parse_message(payload, topic)
        except MessageError as exc:
            log.warning("dropped: %s", exc)
            return
        if getattr(message, "agent", name) != name:
            log.warning("dropped: %s: message claims to be from '%s'", topic, message.agent)
            return
        with self._lock:
            state = self.agents.get(name)
            if isinstance(message, Announce):
                was_lost = state is not None and not state.online
                self.agents[name] = AgentState(announce=message, online=True)
                if was_lost or (state is None and message.site in self.lost):
                    self._event(f"agent {name} is back")
                self._changed.set()
                return
            if state is None:
                return
            if isinstance(message, Status) and message.state == "offline":
                if state.online and state.offline_since is None:
                    state.offline_since, state.offline_connects = time.monotonic(), self.link.connects
                return
            state.last_seen = time.monotonic()
            state.offline_since = None
            if state.unreachable_since is not None:
                self._event(f"agent {name} at {state.announce.site} reachable again after "
                            f"{state.last_seen - state.unreachable_since:.1f} s")
                state.unreachable_since = None
            if isinstance(message, Status):
                if message.state == "online" and not state.online:
                    state.online = True
                    self._event(f"agent {name} is back")
                    self._changed.set()
            elif isinstance(message, Heartbeat):
                state.heartbeat = message
                if not state.online:
                    state.online = True
                    self._event(f"agent {name} is back (heartbeat)")
                    self._changed.set()
            elif isinstance(message, Metrics):
                state.metrics = message
            elif isinstance(message, ModelRequest):
                threading.Thread(target=self._send_model, args=(message,), daemon=True,
                                 name=f"model-{name}").start()

    def _on_link_state(self, topic: str, payload: bytes) -> None:
        bridge = topics.parse_link_state(topic)
        if bridge is None or payload not in (b"0", b"1"):
            log.warning("dropped: %s: a bridge state is \"0\" or \"1\", got %r", topic, payload[:20])
            return
        up, now = payload == b"1", time.time()
        with self._lock:
            old = self.links.get(bridge)
            if old is not None and old.up == up:
                return
            self.links[bridge] = LinkStatus(up, now)
        if old is None:
            if not up:
                self._event(f"link {bridge} is down")
        elif up:
            self._event(f"link {bridge} is up again after {now - old.since:.1f} s")
        else:
            self._event(f"link {bridge} went down")

    def _send_model(self, request: ModelRequest) -> None:
        path = self._models.get(request.sha256)
        if path is None:
            log.warning("agent %s asked for model %s, which the zoo does not have", request.agent, request.sha256[:12])
            return
        data = path.read_bytes()
        total = max(1, -(-len(data) // CHUNK_BYTES))
        for i in range(total):
            chunk = data[i * CHUNK_BYTES:(i + 1) * CHUNK_BYTES]
            self.link.publish(topics.model_chunks(request.agent, request.sha256),
                              encode_chunk(request.sha256, request.name, i, total, len(data), chunk))
        self._event(f"sent model {request.name} to {request.agent} ({len(data)} bytes in {total} chunks)")

    # -- deploying -------------------------------------------------------------------------------
    def _on_reconnect(self) -> None:
        with self._lock:
            first = self.link.connects <= 1
            self._grace_until = time.monotonic() + (0.0 if first else self.grace_s)
            for s in self.agents.values():
                s.last_seen = max(s.last_seen, time.monotonic())
        if not first:
            self._event(f"reconnected to the broker; agents have {self.grace_s:.1f} s to be heard again")

    def in_grace(self) -> bool:
        return time.monotonic() < self._grace_until

    def connect(self, timeout: float = 10.0) -> None:
        self.link.on_connect(self._on_reconnect)
        self.link.subscribe(topics.ALL_AGENTS, self._on_agent)
        self.link.subscribe(topics.link_state("+"), self._on_link_state)
        self.link.start()
        self.link.wait_connected(timeout)

    def wait_for_agents(self, timeout: float, progress: Callable[[int, int, list[str]], None] | None = None,
                        expect: Iterable[str] = ()) -> list[str]:
        """Wait until every site the plan uses has an online agent, and every agent in `expect` is
        online (a site's tasks are spread over the agents there when the plan is published);
        returns the sites, and the expected agents, still missing."""
        deadline = time.monotonic() + timeout
        expect = set(expect)
        while True:
            with self._lock:
                online = {n: s.announce for n, s in self.agents.items() if s.online}
            chosen, missing = match_agents(self.current.plan, online)
            missing = missing + sorted(expect - set(online) - set(missing))
            if progress:
                progress(len(chosen), len(chosen) + len(missing), missing)
            if not missing or time.monotonic() >= deadline:
                return missing
            time.sleep(0.2)

    def publish(self) -> int:
        """Publish assignments for the current plan to the online agents; returns the version."""
        with self._lock:
            online = {n: s.announce for n, s in self.agents.items() if s.online}
            chosen, missing = match_agents(self.current.plan, online)
            if missing:
                raise JellyBeanError(f"no agent is online for site(s) {', '.join(missing)}")
            serving = {n for names in chosen.values() for n in names}
            idle = [n for n in online if n not in serving]
            version = self._next_version()
            self._published_at = time.time()
            assignments = build_assignments(self.current, chosen, version, drop_after_ms=self.drop_after_ms,
                                            idle_agents=idle, deadline_ms=self.deadline_ms,
                                            previous=self._assigned)
            self.site_agents = chosen
            self._assigned = assignments
        for agent, a in assignments.items():
            self.link.publish(topics.assignment(agent), a.to_bytes(), retain=True)
        self.link.publish(topics.ROUTES, build_routes(self.current, version).to_bytes(), retain=True)
        self._event(f"published assignment version {version} to {len(assignments)} agent(s): "
                    + ", ".join(f"{a}={len(x.tasks)} task(s)" for a, x in sorted(assignments.items())))
        return version

    def ready(self) -> bool:
        """Every assigned agent reports the current version and no task errors."""
        with self._lock:
            for agent in (n for names in self.site_agents.values() for n in names):
                s = self.agents.get(agent)
                hb = s.heartbeat if s else None
                if hb is None or hb.assignment_version != self.version or hb.errors:
                    return False
        return True

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return True
            time.sleep(0.1)
        return False

    def serve_metrics(self, port: int, host: str | None = None) -> str:
        """Serve the controller's own Prometheus endpoint (plan, agents, re-plans, links; see
        controller_metrics) on `port` (0: any free one); returns its URL."""
        from jellybean.agents.controller_metrics import controller_registry
        from jellybean.agents.telemetry import serve_registry

        self.metrics_url, self._metrics_server = serve_registry(controller_registry(self), port, host)
        return self.metrics_url

    def metrics_urls(self) -> dict[str, str]:
        """Each online agent's Prometheus endpoint, as it announced it ("none" without one)."""
        with self._lock:
            return {n: s.announce.metrics_url or "none" for n, s in self.agents.items() if s.online}

    def errors(self) -> list[str]:
        with self._lock:
            return [f"{n}: {e}" for n, s in self.agents.items() if s.heartbeat for e in s.heartbeat.errors]

    # -- watching --------------------------------------------------------------------------------
    def check(self) -> bool:
        """Mark agents that missed heartbeats as lost; re-plan if the set of usable sites changed,
        or if the measured load has left the plan's for long enough. True when it re-planned."""
        now = time.monotonic()
        with self._lock:
            for name, s in self.agents.items():
                if s.offline_since is not None:
                    if self.in_grace() or not self.link.connected or self.link.connects != s.offline_connects:
                        s.offline_since = None   # the broker went away: heartbeats will tell
                    elif now - s.offline_since >= WILL_CONFIRM_S and s.online:
                        s.offline_since = None
                        s.online = False
                        self._event(f"agent {name} went offline (last will or shutdown)")
                        self._changed.set()
                        continue
                if self.in_grace() or not self.link.connected:
                    continue
                if s.online and now - s.last_seen > self.missed * self.heartbeat_s + 0.5:
                    if s.unreachable_since is None:
                        s.unreachable_since = s.last_seen
                        self._event(f"agent {name} at {s.announce.site} unreachable: missed {self.missed} heartbeats; "
                                    f"it keeps its assignment, re-planned without it after "
                                    f"{self.outage_budget_s:g} s (outage budget)")
                    if now - s.unreachable_since >= self.outage_budget_s:
                        s.online, s.unreachable_since = False, None
                        self._event(f"agent {name} unreachable for {now - s.last_seen:.1f} s, over the outage budget")
                        self._changed.set()
            if self._changed.is_set():
                self._changed.clear()
                online_sites = {s.announce.site for s in self.agents.values() if s.online}
                lost = {site for site in _planned_sites(self.original) if site not in online_sites}
                if lost != self.lost:
                    return self._replan(lost, self.load)
                gone = sorted(n for names in self.site_agents.values() for n in names
                              if n in self.agents and not self.agents[n].online)
                if gone:
                    return self._respread(gone)
        if self.adapter is not None:
            return self._adapt(now)
        return self._check_load(now)

    def _adapt(self, now: float) -> bool:
        # Demand is what arrives, whichever assignment the agents run: a decision must not wait
        # for metrics of the version it just published.
        with self._lock:
            fresh = [s.metrics for s in self.agents.values() if s.online and s.metrics is not None
                     and time.time() - s.metrics.sent_at <= 3 * s.metrics.interval_s]
            # What the sites served, from reports whose whole interval ran the current plan.
            per_site: dict[str, list[OperatorMetrics]] = {}
            for site, names in self.site_agents.items():
                for n in names:
                    m = self.agents[n].metrics if n in self.agents else None
                    if m is None or m.assignment_version != self.version or m.sent_at <= self._served_seen.get(n, 0.0) \
                            or m.sent_at - m.interval_s < self._published_at + APPLY_S:
                        continue
                    per_site.setdefault(site, []).extend(m.operators)
                    self._served_seen[n] = m.sent_at
        if per_site:
            self.adapter.observe(self.current.plan, per_site, now)
        demand: dict[str, float] = {}
        for m in fresh:
            for o in m.operators:
                demand[o.operator] = demand.get(o.operator, 0.0) + o.arrivals_per_s
        deployment = self.adapter.step(demand, now, max((m.sent_at for m in fresh), default=None))
        if deployment is None:
            return False
        _, decision = self.adapter.decisions[-1]
        self.current = deployment
        mix = "; ".join(f"{op} " + " + ".join(f"{v} {s:.0%}" for v, s in sorted(shares.items(), key=lambda kv: -kv[1]))
                        for op, shares in decision.shares.items() if len(shares) > 1 or
                        decision.variants().get(op) != self.original.plan.variants.get(op))
        self._event(f"adapt ({decision.phase}): {decision.reason}; accuracy {decision.accuracy:.3f}, "
                    f"{decision.cost:.4f} $/h, serves {decision.served:.0%}" + (f"; {mix}" if mix else "")
                    + f" (decided in {decision.seconds * 1000:.0f} ms)"
                    + (f"; capacities derated: {derated}" if (derated := self.adapter.derating.describe()) else ""))
        self.publish()
        return True

    def _current_metrics(self) -> dict[str, Metrics]:
        """Fresh metrics of the agents that run the current assignment."""
        with self._lock:
            return {n: s.metrics for n, s in self.agents.items()
                    if s.online and s.metrics is not None and s.metrics.assignment_version == self.version
                    and time.time() - s.metrics.sent_at <= 3 * s.metrics.interval_s}

    def measured_load(self) -> dict[str, float]:
        """Operator -> items/s arriving at the agents that run the current assignment (their last
        metrics interval)."""
        total: dict[str, float] = {}
        for m in self._current_metrics().values():
            for o in m.operators:
                total[o.operator] = total.get(o.operator, 0.0) + o.arrivals_per_s
        return total

    def _counters(self) -> dict[str, tuple[float, dict[str, float]]]:
        return {n: (m.sent_at, {o.operator: o.arrivals for o in m.operators})
                for n, m in self._current_metrics().items()}

    def _load_since(self, start: dict[str, tuple[float, dict[str, float]]]) -> dict[str, float]:
        """Operator -> items/s over the window: each agent's counter difference over its own time."""
        rates: dict[str, float] = {}
        for name, (t1, counts) in self._counters().items():
            t0, before = start.get(name, (t1, {}))
            if t1 - t0 <= 0:
                continue
            for op, n in counts.items():
                rates[op] = rates.get(op, 0.0) + max(0.0, n - before.get(op, 0.0)) / (t1 - t0)
        return rates

    def _check_load(self, now: float) -> bool:
        if self.load_tolerance is None:
            return False
        planned = self.current.plan.predicted.throughput
        measured = self.measured_load()
        ratios = {op: measured.get(op, 0.0) / rate for op, rate in planned.items() if rate > 0}
        # Next to no traffic from the sources is an idle deployment (or a replay fading out while
        # downstream operators still work off a backlog), not a load to plan for.
        fed = [r for op, r in ratios.items() if op in self._source_fed] or list(ratios.values())
        if not ratios or max(fed) < IDLE_FRACTION:
            self._load_window = None
            return False
        # A window opens when the last interval is off the plan and closes `load_sustain_s` later;
        # the load over the whole window decides (a loaded source sends in bursts, a burst fades).
        if self._load_window is None:
            if not all(abs(r - 1) <= self.load_tolerance for r in ratios.values()):
                self._load_window = (now, self._counters())
            return False
        opened, start = self._load_window
        if now - opened < self.load_sustain_s:
            return False
        self._load_window = None
        over = self._load_since(start)
        ratios = {op: over.get(op, 0.0) / rate for op, rate in planned.items() if rate > 0}
        if all(abs(r - 1) <= self.load_tolerance for r in ratios.values()):
            return False
        load = {op: max(0.05, r) * self.load.get(op, 1.0) for op, r in ratios.items()}
        self._event("measured load differs from the plan for "
                    f"{self.load_sustain_s:.0f} s: " + ", ".join(f"{op} {r:.2f}x" for op, r in sorted(ratios.items())))
        return self._replan(self.lost, load)

    def _replan(self, lost: set[str], load: dict[str, float]) -> bool:
        started = time.perf_counter()
        what = f"without {', '.join(sorted(lost))}" if lost else "with every site"
        if load:
            what += " for the measured load"
        try:
            deployment = replan(self.original, lost, self.replan_time_limit, load=load) \
                if (lost or load) else self.original
        except JellyBeanError as exc:
            self.replan_failures += 1
            self._event(f"re-plan {what} failed, the current plan stays: {exc}")
            return False
        self.lost = lost
        self.load = load
        self.current = deployment
        if self.adapter is not None:
            self.adapter.rebase(deployment)
        self.replans += 1
        for agent_name, s in list(self.agents.items()):
            if not s.online:
                # A dead agent must not pick up stale work when it returns; it gets a fresh one.
                self.link.publish(topics.assignment(agent_name), b"", retain=True)
        self._event(f"re-planned {what} in {time.perf_counter() - started:.2f} s: "
                    f"{deployment.plan.cost.total:.4f} $/h")
        self.publish()
        self._drain_lost(lost)
        return True

    def _respread(self, gone: list[str]) -> bool:
        """An agent died at a site whose other agents live on: its share of the site's tasks goes to
        them (same plan), and what its broker session held is sent on where it runs now."""
        for name in gone:
            self.link.publish(topics.assignment(name), b"", retain=True)
        self._event(f"agent(s) {', '.join(gone)} gone; their sites' work spread over the agents still there")
        try:
            self.publish()
        except JellyBeanError as exc:
            self._event(f"spreading the work of {', '.join(gone)} failed, the current assignments stay: {exc}")
            return False
        self._drain_agents(set(gone), site_lives=True)
        return True

    def _drain_lost(self, lost: set[str]) -> None:
        """Send on what the lost sites' agents held (their broker sessions) where it runs now."""
        self._drain_agents({n for n, s in self.agents.items() if not s.online and s.announce.site in lost})

    def _drain_agents(self, names: set[str], site_lives: bool = False) -> None:
        where = placements(self.current.plan)
        keyed = keyed_map(self.current.plan, self.current.inputs)
        for name, s in list(self.agents.items()):
            if s.online or name not in names:
                continue
            running = self.drains.get(name)
            url = self.takeover(name)
            if url is None or (running is not None and not running.done):
                continue
            self.drains[name] = SessionDrain(url, name, s.announce.site, where, keyed, ca=self.ca,
                                             on_event=self._event, site_lives=site_lives).start()

    def run(self, until: Callable[[], bool] | None = None, tick: Callable[[], None] | None = None) -> None:
        while not self._stop.is_set() and not (until and until()):
            self.check()
            if tick:
                tick()
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        for drain in self.drains.values():
            drain.link.stop()
        self.link.stop()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
            self._metrics_server = None

    def metrics(self) -> dict[str, Metrics]:
        with self._lock:
            return {n: s.metrics for n, s in self.agents.items() if s.metrics is not None}


def _anonymous_takeover(broker: str) -> Callable[[str], str | None]:
    from jellybean.agents.broker import parse_broker_url

    anonymous = parse_broker_url(broker).username is None
    return lambda agent: broker if anonymous else None


def _planned_sites(dep: Deployment) -> set[str]:
    return {w.location for w in dep.plan.workers if w.count > 0}
