"""Which MQTT topics cross which infrastructure link, for one broker per site bridged along the links.

Pure functions over the infrastructure (no files, no brokers); ``broker.write_site_configs``
turns the result into Mosquitto bridge sections.

- Every link is one bridge, initiated by the lower-tier end (on a tie, the link's ``from``) towards
  the other end, which only sees a client (the bridge user).
- Data: for every site D, each site S that can send data to D (over the links in the directions
  they allow data, as ``grants_from_plan`` reads them) forwards ``jb/v1/data/D/#`` to one next hop,
  on the widest path to D (the largest narrowest bandwidth; then fewest hops, least latency, names).
  The next hops towards D form a tree rooted at D, so a message for D reaches D once and never
  comes back. (The planner may split one producer's items for D over two paths; the bridges carry
  them over this one.)
- Re-send acknowledgements (``jb/v1/acks/P/#``, jellybean.agents.resend): like data, on a tree
  rooted at each site P, but over all links either way and on the shortest path, since they go back
  against the data's direction and are a few bytes each.
- Control: a shortest-path tree over all links (either direction) rooted at the controller's site: agents'
  subtrees (announce, status, heartbeat, metrics, model requests) and the sink go up it, each
  agent's assignment and model chunks go down the path to its site, and the routes go down to every site.
- Link states: every bridge publishes its state (Mosquitto's notifications, retained) at both its
  brokers, "0" at the far end as its last will. The far end's copy ("1" once connected, the will
  when it fails) goes up the control tree with the agents' reports, so the controller sees which
  link is down. The near end's copy stays there: queued while its own link was down, it would
  arrive after the fresh "1" and overwrite it.
- So on a link a topic pattern crosses in one direction only, and every pattern's links form a
  tree: no message loops between bridged brokers.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Mapping

from jellybean.agents import topics
from jellybean.errors import JellyBeanError

if TYPE_CHECKING:
    from jellybean.spec.infrastructure import Infrastructure

Direction = Literal["out", "in"]
DEFAULT_OUTAGE_BUDGET_S = 60.0
BRIDGE_QOS = 1
BRIDGE_KEEPALIVE_S = 5  # a cut link is noticed in 7.5 s; idle, it costs two small packets per 5 s


@dataclass(frozen=True)
class BridgeTopic:
    """``topic PATTERN DIRECTION QOS`` in the initiating site's bridge: out = towards the remote site."""

    pattern: str
    direction: Direction
    why: str = ""


@dataclass(frozen=True)
class Bridge:
    """One link's bridge: the ``local`` site's broker connects to the ``remote`` site's broker."""

    local: str
    remote: str
    bandwidth_mbps: float | None
    topics: tuple[BridgeTopic, ...]

    @property
    def name(self) -> str:
        """The bridge's connection name, its user at the remote broker and its client id there."""
        return f"bridge-{self.local}-{self.remote}"

    def patterns(self, direction: Direction) -> tuple[str, ...]:
        return tuple(t.pattern for t in self.topics if t.direction == direction)

    def carries(self, topic: str, direction: Direction) -> bool:
        return any(t.direction == direction and topic_matches(t.pattern, topic) for t in self.topics)

    def queue_bytes(self, outage_budget_s: float = DEFAULT_OUTAGE_BUDGET_S) -> int | None:
        """Bytes the link carries at full bandwidth during an outage of ``outage_budget_s`` (None: unlimited link)."""
        return queue_bytes(self.bandwidth_mbps, outage_budget_s)


def queue_bytes(bandwidth_mbps: float | None, outage_budget_s: float) -> int | None:
    if bandwidth_mbps is None:
        return None
    return math.ceil(bandwidth_mbps * 1e6 / 8 * outage_budget_s)


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT wildcard matching (``+`` one level, ``#`` the rest, itself included)."""
    p, t = pattern.split("/"), topic.split("/")
    for i, level in enumerate(p):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(p) == len(t)


def controller_site(infrastructure: Infrastructure, name: str | None = None) -> str:
    """The site the controller runs at: ``name``, else the first site of the highest tier (the cloud)."""
    from jellybean.spec.hardware import tier_rank

    names = [s.name for s in infrastructure.sites]
    if name is not None:
        if name not in names:
            raise JellyBeanError(f"controller site '{name}' is not a site of infrastructure '{infrastructure.name}' "
                                 f"(sites: {', '.join(names)}); give one of them")
        return name
    top = max(tier_rank(s.tier) for s in infrastructure.sites)
    return next(s.name for s in infrastructure.sites if tier_rank(s.tier) == top)


def _tree(root: str, into: Mapping[str, Mapping[str, tuple[float, float]]], *, widest: bool) -> dict[str, str]:
    """Next hop towards ``root`` for every site that reaches it, a tree rooted at ``root`` (Dijkstra
    from the root): ``into[b][a]`` = (bandwidth Mbit/s, latency ms) of an arc a -> b. Paths are
    compared by their narrowest link (when ``widest``), then hops, then latency, then site names."""
    start = (-math.inf if widest else 0.0, 0, 0.0, ())  # (minus the narrowest bandwidth, hops, latency, path)
    best: dict[str, tuple] = {root: start}
    nxt: dict[str, str] = {}
    heap = [(*start, root)]
    done: set[str] = set()
    while heap:
        *key, site = heapq.heappop(heap)
        narrow, hops, lat, path = key
        if site in done:
            continue
        done.add(site)
        for prev, (mbps, ms) in sorted(into.get(site, {}).items()):
            cand = (-min(-narrow, mbps) if widest else 0.0, hops + 1, lat + ms, (*path, site))
            if prev not in done and (prev not in best or cand < best[prev]):
                best[prev] = cand
                nxt[prev] = site
                heapq.heappush(heap, (*cand, prev))
    return nxt


def _arc(link) -> tuple[float, float]:
    return (math.inf if link.bandwidth_mbps is None else link.bandwidth_mbps, link.latency_ms)


def widest_next_hops(arcs: Mapping[tuple[str, str], tuple[float | None, float]], target: str) -> dict[str, str]:
    """Site -> its next hop towards ``target`` over directed ``arcs`` ((from, to) -> (Mbit/s or
    None for unlimited, latency ms)), by the rule the data bridges follow."""
    into: dict[str, dict[str, tuple[float, float]]] = {}
    for (a, b), (mbps, ms) in arcs.items():
        into.setdefault(b, {})[a] = (math.inf if mbps is None else mbps, ms)
    return _tree(target, into, widest=True)


def data_next_hops(infrastructure: Infrastructure) -> dict[str, dict[str, str]]:
    """{destination D: {site S: the next hop from S towards D}} over the arcs data may take, on
    the widest path (data is what fills links), then the shortest."""
    into: dict[str, dict[str, tuple[float, float]]] = {s.name: {} for s in infrastructure.sites}
    for link in infrastructure.links:
        into[link.to][link.from_] = _arc(link)
        if link.both_ways:
            into[link.from_][link.to] = _arc(link)
    return {d: _tree(d, into, widest=True) for d in into}


def ack_next_hops(infrastructure: Infrastructure) -> dict[str, dict[str, str]]:
    """{producer site P: {site S: the next hop from S towards P}} over all links, either direction,
    on the shortest path: re-send acknowledgements go back the way data came, and are a few bytes."""
    into: dict[str, dict[str, tuple[float, float]]] = {s.name: {} for s in infrastructure.sites}
    for link in infrastructure.links:
        into[link.to][link.from_] = _arc(link)
        into[link.from_][link.to] = _arc(link)
    return {p: _tree(p, into, widest=False) for p in into}


def control_next_hops(infrastructure: Infrastructure, controller: str) -> dict[str, str]:
    """{site: its next hop towards the controller's site} over all links, either direction, on
    the shortest path (fewest hops, then least latency)."""
    into: dict[str, dict[str, tuple[float, float]]] = {s.name: {} for s in infrastructure.sites}
    for link in infrastructure.links:
        into[link.to][link.from_] = _arc(link)
        into[link.from_][link.to] = _arc(link)
    return _tree(controller, into, widest=False)


def plan_bridges(infrastructure: Infrastructure, agent_sites: Mapping[str, str], *,
                 controller: str | None = None) -> tuple[Bridge, ...]:
    """One bridge per link with the topics that cross it (``agent_sites``: agent name -> its site).

    A site the controller cannot reach over the links gets no control topics (a warning for the
    caller to give); a link nothing crosses still gets its bridge (a re-plan cannot use it, though).
    """
    from jellybean.spec.hardware import tier_rank

    controller = controller_site(infrastructure, controller)
    tiers = {s.name: tier_rank(s.tier) for s in infrastructure.sites}
    for agent, site in agent_sites.items():
        if site not in tiers:
            raise JellyBeanError(f"agent '{agent}' serves site '{site}', which infrastructure "
                                 f"'{infrastructure.name}' does not define; give the infrastructure the plan was made from")
    data = data_next_hops(infrastructure)
    acks = ack_next_hops(infrastructure)
    up = control_next_hops(infrastructure, controller)
    ends = []
    for link in infrastructure.links:
        local, remote = link.from_, link.to
        if tiers[remote] < tiers[local]:
            local, remote = remote, local
        ends.append((local, remote))
    agents_at: dict[str, list[str]] = {}
    for agent, site in sorted(agent_sites.items()):
        agents_at.setdefault(site, []).append(agent)

    def below(site: str) -> list[str]:
        """Sites whose control path to the controller passes through ``site`` (itself included)."""
        out = []
        for s in tiers:
            hop = s
            while hop != site and hop in up:
                hop = up[hop]
            if hop == site:
                out.append(s)
        return out

    def crossing(a: str, b: str) -> list[BridgeTopic]:
        """Topics crossing from a to b (direction filled in by the caller)."""
        found = [BridgeTopic(topics.data(d, "#"), "out", f"data for {d}")
                 for d in sorted(data) if data[d].get(a) == b]
        found += [BridgeTopic(topics.ack(p, "#"), "out", f"re-send acknowledgements for {p}")
                  for p in sorted(acks) if acks[p].get(a) == b]
        if up.get(a) == b:  # a is below b in the control tree: its subtree's agents report up
            for s in below(a):
                found += [BridgeTopic(topics.agent(n, "#"), "out", f"agent {n} at {s} to the controller")
                          for n in agents_at.get(s, [])]
            found.append(BridgeTopic(topics.sink("#"), "out", "results to the controller"))
            below_a = set(below(a))
            found += [BridgeTopic(topics.link_state(Bridge(l, r, None, ()).name), "out", f"state of link {l}-{r}")
                      for l, r in ends if r in below_a]
        if up.get(b) == a:  # b is below a: assignments, models and routes go down
            for s in below(b):
                for n in agents_at.get(s, []):
                    found += [BridgeTopic(topics.assignment(n), "out", f"assignment of {n} at {s}"),
                              BridgeTopic(topics.model_chunks(n, "#"), "out", f"models of {n} at {s}")]
            found.append(BridgeTopic(topics.ROUTES, "out", "routes from the controller"))
        return found

    bridges = []
    for link, (local, remote) in zip(infrastructure.links, ends):
        out = crossing(local, remote)
        inward = [BridgeTopic(t.pattern, "in", t.why) for t in crossing(remote, local)]
        bridges.append(Bridge(local=local, remote=remote, bandwidth_mbps=link.bandwidth_mbps,
                              topics=(*out, *inward)))
    return tuple(bridges)


def unreachable_from_controller(infrastructure: Infrastructure, controller: str | None = None) -> list[str]:
    """Sites no chain of links joins to the controller's site (their agents cannot be reached)."""
    controller = controller_site(infrastructure, controller)
    up = control_next_hops(infrastructure, controller)
    return [s.name for s in infrastructure.sites if s.name != controller and s.name not in up]


def bridge_conf(bridge: Bridge, *, address: str, password: str, cafile: str) -> str:
    """The Mosquitto ``connection`` section of one bridge, for the initiating site's configuration."""
    lines = [
        f"# Link {bridge.local} -> {bridge.remote}"
        + (f", {bridge.bandwidth_mbps:g} Mbit/s" if bridge.bandwidth_mbps is not None else ", unlimited")
        + ": a persistent session that queues while the link is down.",
        f"connection {bridge.name}",
        f"address {address}",
        "bridge_protocol_version mqttv311",
        "try_private true",
        "cleansession false",
        f"remote_clientid {bridge.name}",
        f"local_clientid local.{bridge.name}",
        f"remote_username {bridge.name}",
        f"remote_password {password}",
        f"bridge_cafile {cafile}",
        "bridge_insecure false",
        "bridge_tls_version tlsv1.2",
        # Its state, retained, at both ends: "1" once connected; "0" locally when it fails and, as
        # its last will, at the far end (after 1.5 keep-alives without a packet: a cut link).
        "notifications true",
        f"notification_topic {topics.link_state(bridge.name)}",
        "restart_timeout 1 30",
        f"keepalive_interval {BRIDGE_KEEPALIVE_S}",
    ]
    for t in bridge.topics:
        lines.append(f"topic {t.pattern} {t.direction} {BRIDGE_QOS}")
    return "\n".join(lines) + "\n"
