"""An infrastructure's sites as Linux network namespaces, its links as shaped veth pairs.

`SiteNetwork(infrastructure).create()` builds, on one machine:

- **one namespace per site**, named ``jb-<run>-s<i>`` (``run``: 6 hex digits per network, ``i``: the
  site's index in the file), loopback up, IPv4 forwarding on. Site names can be long
  (``aws-us-east-1``); the short ids keep every name within Linux's 15-character limit, and
  `table()` maps them back. IPv6 is off in the namespaces. Each veth end carries an alias naming
  its link (``ip -n jb-<run>-s0 link`` shows ``alias jellybean crossing -> hub``).
- **one veth pair per link**, the end in site A named ``to-<B's short id>`` (one link joins two
  sites at most, so the name is unique inside A's namespace), with a /30 out of the upper half of
  ``subnet`` (default 10.213.0.0/16: links from 10.213.128.0, the ``from`` end .1, the ``to`` end .2).
- **a site address** per site, a /32 on its loopback out of the lower half of ``subnet``
  (10.213.0.1, 10.213.0.2, ...): the address other sites reach it at, whichever link they come over.
- **static routes along shortest paths**: fewest links first, then least total latency, then a
  fixed order of the links, so every path is unique; unique shortest paths make the routes
  consistent (each hop's route continues the same path) and symmetric (replies come back the way
  requests went). Adjacent sites always talk over their own link. Routes carry the site address
  as their source, so connections between sites run from site address to site address. Routes do
  not change when a link goes down: a cut link partitions, as a WAN outage does, and traffic is
  not rerouted over other links.
- **with ``lan=True``, a LAN per site**: a veth pair from this machine's own namespace (``jb<run>s<i>``)
  to the site's (``lan``), a /30 out of the top quarter of ``subnet``, and a route from here to
  the site address over it. It stands for the site's local network, where its cameras (the
  replay) and, at the controller's site, the controller sit. It is not shaped, and no site routes
  to another over it: a site's only route to another site's address is over the links.
- **tbf on both ends of every link** with a bandwidth (see `tbf_parameters`): a link's capacity
  holds each way. `both_ways` in the infrastructure is the planner's rule about which way data may
  flow, not a property of the wire, so it does not change the shaping.
- **netem delay** of the link's ``latency_ms`` on each end (one way; a round trip is twice that),
  only where the kernel has netem (`netem_available`); otherwise latency is not emulated and
  `latency_note` says so.

Bytes on a link are the kernel's counters of its veth ends (`link_counters`): every byte of every
frame sent, headers included; a GSO super-packet counts its headers once.
"""

from __future__ import annotations

import heapq
import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from jellybean.errors import JellyBeanError
from jellybean.spec.base import load_model, unknown_name
from jellybean.spec.infrastructure import Infrastructure, Link

# tbf parameters (see tbf_parameters). The kernel here runs at HZ=250 with high-resolution timers;
# a bucket of 4 ms of traffic covers one timer tick, so tbf reaches its rate at 1000 Mbit/s too.
TBF_BURST_SECONDS = 0.004
TBF_MIN_BURST_BYTES = 4096  # two full-size frames and change: the rate holds at 1 Mbit/s
TBF_QUEUE_SECONDS = 0.050  # queue before tbf drops: 50 ms of traffic, as a modest WAN router
NETEM_MIN_LIMIT = 1000  # packets; netem's own default
ETHERNET_FRAME_BYTES = 1514

PROBE_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
NETNS_DIR = Path("/var/run/netns")  # where `ip netns` keeps named namespaces


class SiteNetworkError(JellyBeanError):
    """A namespace, veth, route or qdisc could not be made or read; the message names the command."""


@dataclass(frozen=True)
class TbfParameters:
    """A token bucket: ``rate`` in bit/s, the bucket (``burst``) and the queue (``limit``) in bytes."""

    rate_bits: int
    burst_bytes: int
    limit_bytes: int

    def tc_args(self) -> list[str]:
        return ["tbf", "rate", f"{self.rate_bits}bit", "burst", str(self.burst_bytes), "limit", str(self.limit_bytes)]


def tbf_parameters(bandwidth_mbps: float) -> TbfParameters:
    """tbf for a link of ``bandwidth_mbps`` (10^6 bit/s), accurate from 1 to 1000 Mbit/s.

    - burst: 4 ms of traffic, at least 4 KiB. Smaller than one timer tick of traffic and tbf
      cannot keep up at high rates; much larger and a transfer that starts on a full bucket runs
      ahead of the rate (4 ms is 0.4 % of a one-second measurement).
    - limit: the bucket plus 50 ms of traffic queued before tbf drops. TCP then fills the link
      (the round trip between namespaces is well under a millisecond) without a long standing queue.
    """
    rate_bits = max(1, round(bandwidth_mbps * 1e6))
    bytes_per_s = rate_bits / 8
    burst = max(TBF_MIN_BURST_BYTES, round(bytes_per_s * TBF_BURST_SECONDS))
    limit = burst + max(2 * ETHERNET_FRAME_BYTES, round(bytes_per_s * TBF_QUEUE_SECONDS))
    return TbfParameters(rate_bits, burst, limit)


@dataclass(frozen=True)
class SiteNamespace:
    site: str
    short_id: str
    namespace: str
    address: str


@dataclass(frozen=True)
class LinkVeth:
    """One infrastructure link as a veth pair: ``from_if`` in the from-site's namespace, ``to_if`` in the other."""

    name: str
    from_site: str
    to_site: str
    bandwidth_mbps: float | None
    latency_ms: float
    from_if: str
    to_if: str
    from_address: str
    to_address: str
    network: str

    def end(self, site: str) -> tuple[str, str]:
        """(interface, address) of this link's end in ``site``."""
        return (self.from_if, self.from_address) if site == self.from_site else (self.to_if, self.to_address)

    def peer(self, site: str) -> str:
        return self.to_site if site == self.from_site else self.from_site


@dataclass(frozen=True)
class LanVeth:
    """A site's LAN: ``host_if`` in this machine's namespace, ``site_if`` in the site's."""

    site: str
    host_if: str
    site_if: str
    host_address: str
    site_address: str
    network: str


@dataclass(frozen=True)
class LinkCounters:
    """Bytes and packets sent over a link each way, from the kernel counters of its veth ends."""

    link: str
    from_site: str
    to_site: str
    bytes_forward: int  # from_site -> to_site
    bytes_backward: int
    packets_forward: int
    packets_backward: int

    def bytes_from(self, site: str) -> int:
        if site not in (self.from_site, self.to_site):
            raise SiteNetworkError(f"link {self.link} does not touch site '{site}'")
        return self.bytes_forward if site == self.from_site else self.bytes_backward


@dataclass(frozen=True)
class Probe:
    ok: bool
    reason: str
    netem: bool
    netem_reason: str


def _command_text(argv: Sequence[str]) -> str:
    return " ".join(argv)


def _run(argv: Sequence[str], *, stdin: str | None = None, what: str = "") -> str:
    """Run a command to completion; a failure raises SiteNetworkError naming it and its stderr."""
    try:
        done = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        raise SiteNetworkError(f"`{_command_text(argv)}`: {argv[0]} is not installed (install iproute2)") from None
    except subprocess.TimeoutExpired:
        raise SiteNetworkError(f"`{_command_text(argv)}` did not finish in {COMMAND_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        stderr = done.stderr.strip() or done.stdout.strip() or "(no output)"
        failed = _command_text(argv)
        if stdin is not None:
            # `ip -batch -` / `tc -batch -` say "Command failed -:N"; name that line.
            lines = stdin.splitlines()
            line = next((int(w.split(":")[1]) for w in stderr.split() if w.startswith("-:") and w[2:].isdigit()), 0)
            if 1 <= line <= len(lines):
                failed += f"` at line {line}: `{lines[line - 1]}"
        prefix = f"{what}: " if what else ""
        raise SiteNetworkError(f"{prefix}`{failed}` failed (exit {done.returncode}): {stderr}")
    return done.stdout


@lru_cache(maxsize=1)
def probe() -> Probe:
    """Once per process: can this machine build site networks, and does its kernel have netem?"""
    if os.geteuid() != 0:
        return Probe(False, "network namespaces need root (run as root, or without --isolate)", False, "not probed")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return Probe(False, f"`{tool}` is not installed (install iproute2)", False, "not probed")
    name = f"jb-probe-{os.getpid()}"
    try:
        _run(["ip", "netns", "add", name], what="creating a probe namespace")
    except SiteNetworkError as exc:
        return Probe(False, f"network namespaces cannot be created here: {exc}", False, "not probed")
    try:
        try:
            _run(["ip", "-n", name, "link", "set", "lo", "up"])
            _run(["tc", "-n", name, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"])
            netem, netem_reason = True, "netem available"
        except SiteNetworkError as exc:
            netem, netem_reason = False, f"this kernel has no netem qdisc ({exc}); link latency is not emulated"
    finally:
        _run(["ip", "netns", "del", name], what="removing the probe namespace")
    return Probe(True, "root, iproute2 and network namespaces available", netem, netem_reason)


def available() -> tuple[bool, str]:
    """(True, ...) when sites can run in namespaces here; otherwise (False, why not)."""
    p = probe()
    return p.ok, p.reason


def netem_available() -> tuple[bool, str]:
    """(True, ...) when `tc qdisc add ... netem` works; otherwise (False, why, and that latency is not emulated)."""
    p = probe()
    return p.netem, p.netem_reason if p.ok else f"not probed: {p.reason}"


def shortest_paths(sites: Sequence[str], links: Sequence[LinkVeth]) -> dict[tuple[str, str], tuple[int, ...]]:
    """For every ordered pair of connected sites, the link indices along the one shortest path.

    Cost is (links, total latency, the set of links as a bit mask): the mask makes every path's
    cost distinct, so the shortest path is unique, and unique shortest paths give consistent,
    symmetric static routes.
    """
    adjacent: dict[str, list[tuple[int, str]]] = {s: [] for s in sites}
    for i, link in enumerate(links):
        adjacent[link.from_site].append((i, link.to_site))
        adjacent[link.to_site].append((i, link.from_site))
    paths: dict[tuple[str, str], tuple[int, ...]] = {}
    for source in sites:
        best: dict[str, tuple[int, float, int]] = {source: (0, 0.0, 0)}
        path: dict[str, tuple[int, ...]] = {source: ()}
        queue: list[tuple[tuple[int, float, int], str]] = [((0, 0.0, 0), source)]
        done: set[str] = set()
        while queue:
            cost, here = heapq.heappop(queue)
            if here in done:
                continue
            done.add(here)
            for i, there in adjacent[here]:
                new = (cost[0] + 1, cost[1] + links[i].latency_ms, cost[2] | (1 << i))
                if there not in done and (there not in best or new < best[there]):
                    best[there] = new
                    path[there] = path[here] + (i,)
                    heapq.heappush(queue, (new, there))
        for target, hops in path.items():
            if target != source:
                paths[(source, target)] = hops
    return paths


def run_namespaces(run_id: str) -> list[str]:
    """The namespaces that exist now of site network ``run_id`` (named exactly ``jb-<run_id>-s<N>``)."""
    pattern = re.compile(rf"jb-{re.escape(run_id)}-s\d+")
    out = _run(["ip", "netns", "list"], what="listing namespaces")
    return sorted(w for w in (line.split()[0] for line in out.splitlines() if line.strip()) if pattern.fullmatch(w))


def destroy_run(run_id: str) -> list[str]:
    """Remove the namespaces of run ``run_id`` that a process no longer around left behind; returns them.

    Processes still running inside them keep them alive until they exit; stop those by PID first.
    """
    removed = []
    for ns in run_namespaces(run_id):
        _run(["ip", "netns", "del", ns], what=f"removing a namespace of run {run_id}")
        removed.append(ns)
    return removed


@dataclass(eq=False)
class SiteNetwork:
    """The sites of ``infrastructure`` as namespaces joined by shaped veth pairs; see the module doc.

    Use as a context manager, or call `create()` and then `destroy()` (idempotent; it removes
    exactly the namespaces this object created, also after `create()` failed half way).
    """

    infrastructure: Infrastructure
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    subnet: str = "10.213.0.0/16"
    shape: bool = True
    lan: bool = False

    sites: dict[str, SiteNamespace] = field(init=False)
    links: tuple[LinkVeth, ...] = field(init=False)
    lans: dict[str, LanVeth] = field(init=False)
    netem: bool = field(init=False, default=False)
    latency_note: str = field(init=False, default="")
    _paths: dict[tuple[str, str], tuple[int, ...]] = field(init=False, repr=False)
    _created: list[str] = field(init=False, default_factory=list, repr=False)
    _processes: list[subprocess.Popen] = field(init=False, default_factory=list, repr=False)
    _lan_ifs: list[str] = field(init=False, default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9]{1,6}", self.run_id):
            raise SiteNetworkError(f"run id {self.run_id!r}: use at most 6 lower-case letters or digits")
        try:
            net = ipaddress.ip_network(self.subnet)
        except ValueError as exc:
            raise SiteNetworkError(f"subnet {self.subnet!r}: {exc}; give an IPv4 network such as 10.213.0.0/16") from None
        if net.version != 4 or net.prefixlen > 22:
            raise SiteNetworkError(f"subnet {self.subnet!r}: give an IPv4 network of /22 or larger")
        site_block, upper = net.subnets(prefixlen_diff=1)
        link_block, lan_block = upper.subnets(prefixlen_diff=1)
        names = [s.name for s in self.infrastructure.sites]
        links = self.infrastructure.links
        if (len(names) > site_block.num_addresses - 2 or len(links) > link_block.num_addresses // 4
                or len(names) > lan_block.num_addresses // 4):
            raise SiteNetworkError(
                f"subnet {self.subnet} is too small for {len(names)} sites and {len(links)} links; give a larger one"
            )
        ids = {name: f"s{i}" for i, name in enumerate(names)}
        self.sites = {
            name: SiteNamespace(name, ids[name], f"jb-{self.run_id}-{ids[name]}", str(site_block.network_address + i + 1))
            for i, name in enumerate(names)
        }
        veths = []
        for i, link in enumerate(links):
            base = link_block.network_address + 4 * i
            veths.append(
                LinkVeth(
                    name=f"{link.from_}->{link.to}",
                    from_site=link.from_,
                    to_site=link.to,
                    bandwidth_mbps=link.bandwidth_mbps,
                    latency_ms=link.latency_ms,
                    from_if=f"to-{ids[link.to]}",
                    to_if=f"to-{ids[link.from_]}",
                    from_address=str(base + 1),
                    to_address=str(base + 2),
                    network=f"{base}/30",
                )
            )
        self.links = tuple(veths)
        self._paths = shortest_paths(names, self.links)
        self.lans = {}
        for i, name in enumerate(names):
            base = lan_block.network_address + 4 * i
            self.lans[name] = LanVeth(site=name, host_if=f"jb{self.run_id}{ids[name]}", site_if="lan",
                                      host_address=str(base + 1), site_address=str(base + 2), network=f"{base}/30")

    @classmethod
    def from_file(cls, path: Path, **kwargs: Any) -> "SiteNetwork":
        return cls(load_model(Infrastructure, Path(path)), **kwargs)

    # -- lookups -----------------------------------------------------------------------------

    def _site(self, site: str) -> SiteNamespace:
        if site not in self.sites:
            raise SiteNetworkError(unknown_name("site", site, list(self.sites)))
        return self.sites[site]

    def namespace(self, site: str) -> str:
        return self._site(site).namespace

    def address(self, site: str) -> str:
        """The address other sites reach ``site`` at (its /32 on loopback, routed over the links)."""
        return self._site(site).address

    def link(self, ref: LinkVeth | Link | str | tuple[str, str]) -> LinkVeth:
        """A link by its veth, its spec, ``"a->b"`` or ``(a, b)`` (either order)."""
        if isinstance(ref, LinkVeth):
            ends = (ref.from_site, ref.to_site)
        elif isinstance(ref, Link):
            ends = (ref.from_, ref.to)
        elif isinstance(ref, str):
            ends = tuple(part.strip() for part in ref.split("->"))
        else:
            ends = tuple(ref)
        for veth in self.links:
            if set(ends) == {veth.from_site, veth.to_site} and len(ends) == 2:
                return veth
        known = ", ".join(v.name for v in self.links) or "none"
        raise SiteNetworkError(f"no link joins {' and '.join(map(str, ends))} (links: {known})")

    def path(self, source: str, target: str) -> tuple[str, ...]:
        """The links, in order, that traffic from ``source`` to ``target`` crosses."""
        self._site(source)
        self._site(target)
        if source == target:
            return ()
        if (source, target) not in self._paths:
            raise SiteNetworkError(f"no path of links joins {source} and {target}")
        return tuple(self.links[i].name for i in self._paths[(source, target)])

    def table(self) -> list[dict[str, str]]:
        """One row per site: its name, short id, namespace, address and interfaces (for a printout)."""
        rows = []
        for s in self.sites.values():
            ifs = [f"{v.end(s.site)[0]}={v.peer(s.site)}" for v in self.links if s.site in (v.from_site, v.to_site)]
            rows.append({"site": s.site, "id": s.short_id, "namespace": s.namespace, "address": s.address,
                         "interfaces": " ".join(ifs)})
        return rows

    # -- building ------------------------------------------------------------------------------

    def create(self) -> "SiteNetwork":
        """Build namespaces, veths, addresses, routes and shaping; on any failure undo it all and raise."""
        ok, reason = available()
        if not ok:
            raise SiteNetworkError(f"cannot isolate sites: {reason}")
        if self._created:
            raise SiteNetworkError(f"site network {self.run_id} is already created; destroy() it first")
        self.netem, self.latency_note = netem_available()
        if self.netem:
            self.latency_note = "link latency emulated with netem (one way, on each end)"
        try:
            for s in self.sites.values():
                _run(["ip", "netns", "add", s.namespace], what=f"site {s.site}")
                self._created.append(s.namespace)
                # IPv4 forwarding on; IPv6 off, so links carry no neighbour or router chatter.
                _run(["ip", "netns", "exec", s.namespace, "sysctl", "-q", "-e", "-w", "net.ipv4.ip_forward=1",
                      "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"],
                     what=f"site {s.site}")
            for v in self.links:
                a, b = self.sites[v.from_site].namespace, self.sites[v.to_site].namespace
                _run(["ip", "-n", a, "link", "add", v.from_if, "type", "veth", "peer", "name", v.to_if, "netns", b],
                     what=f"link {v.name}")
            for s in self.sites.values():
                _run(["ip", "-n", s.namespace, "-batch", "-"], stdin=self._interface_batch(s.site),
                     what=f"site {s.site}")
            for s in self.sites.values():
                batch = self._route_batch(s.site)
                if batch:
                    _run(["ip", "-n", s.namespace, "-batch", "-"], stdin=batch, what=f"routes of site {s.site}")
            for v in self.links:
                self._shape(v)
            if self.lan:
                for s in self.sites.values():
                    self._add_lan(s)
        except BaseException as exc:
            try:
                self.destroy()
            except SiteNetworkError as cleanup:
                exc.add_note(f"removing the site namespaces after that failed too: {cleanup}")
            raise
        return self

    def _add_lan(self, s: SiteNamespace) -> None:
        """The site's LAN veth; its host end goes when the namespace does (deleting either end of a
        veth deletes the pair), and the host route with it."""
        lan = self.lans[s.site]
        _run(["ip", "link", "add", lan.host_if, "type", "veth", "peer", "name", lan.site_if, "netns", s.namespace],
             what=f"LAN of site {s.site}")
        self._lan_ifs.append(lan.host_if)
        _run(["ip", "-batch", "-"], what=f"LAN of site {s.site}", stdin=(
            f'link set dev {lan.host_if} alias "jellybean LAN of {s.site}"\n'
            f"address add {lan.host_address}/30 dev {lan.host_if}\nlink set dev {lan.host_if} up\n"
            f"route replace {s.address}/32 via {lan.site_address} dev {lan.host_if}\n"))
        _run(["ip", "-n", s.namespace, "-batch", "-"], what=f"LAN of site {s.site}", stdin=(
            f'link set dev {lan.site_if} alias "jellybean LAN"\n'
            f"address add {lan.site_address}/30 dev {lan.site_if}\nlink set dev {lan.site_if} up\n"))

    def _interface_batch(self, site: str) -> str:
        s = self.sites[site]
        lines = ["link set lo up", f"address add {s.address}/32 dev lo"]
        for v in self.links:
            if site in (v.from_site, v.to_site):
                ifname, addr = v.end(site)
                lines += [
                    f'link set dev {ifname} alias "jellybean {v.from_site} -> {v.to_site}"',
                    f"address add {addr}/30 dev {ifname}",
                    f"link set dev {ifname} up",
                ]
        return "\n".join(lines) + "\n"

    def _first_hop(self, site: str, target: str) -> tuple[str, str] | None:
        """(interface, next-hop address) of the first link from ``site`` towards ``target``."""
        hops = self._paths.get((site, target))
        if not hops:
            return None
        v = self.links[hops[0]]
        return v.end(site)[0], v.end(v.peer(site))[1]

    def _route_batch(self, site: str) -> str:
        own = self.sites[site].address
        lines = []
        for target, t in self.sites.items():
            hop = self._first_hop(site, target)
            if hop:
                lines.append(f"route replace {t.address}/32 via {hop[1]} dev {hop[0]} src {own}")
        for v in self.links:
            if site in (v.from_site, v.to_site):
                continue
            reachable = [e for e in (v.from_site, v.to_site) if (site, e) in self._paths]
            if reachable:
                nearer = min(reachable, key=lambda e: len(self._paths[(site, e)]))
                hop = self._first_hop(site, nearer)
                if hop:
                        lines.append(f"route replace {v.network} via {hop[1]} dev {hop[0]} src {own}")
        return "\n".join(lines) + "\n" if lines else ""

    def _shape(self, v: LinkVeth) -> None:
        if not self.shape:
            return
        for site in (v.from_site, v.to_site):
            ns, ifname = self.sites[site].namespace, v.end(site)[0]
            base = ["tc", "-n", ns, "qdisc", "replace", "dev", ifname]
            delay = self.netem and v.latency_ms > 0
            if delay:
                limit = NETEM_MIN_LIMIT
                if v.bandwidth_mbps:
                    in_flight = v.bandwidth_mbps * 1e6 / 8 * v.latency_ms / 1000 / ETHERNET_FRAME_BYTES
                    limit = max(NETEM_MIN_LIMIT, int(2 * in_flight))
                _run(base + ["root", "handle", "1:", "netem", "delay", f"{v.latency_ms}ms", "limit", str(limit)],
                     what=f"link {v.name}")
            if v.bandwidth_mbps:
                parent = ["parent", "1:1", "handle", "10:"] if delay else ["root", "handle", "1:"]
                _run(base + parent + tbf_parameters(v.bandwidth_mbps).tc_args(), what=f"link {v.name}")

    # -- running and measuring -----------------------------------------------------------------

    def run(self, site: str, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen:
        """Start ``argv`` inside ``site``'s namespace; the Popen's pid is the process itself.

        The caller stops it by that pid; `destroy()` stops any that still run.
        """
        ns = self.namespace(site)
        if ns not in self._created:
            raise SiteNetworkError(f"site network {self.run_id} is not created; call create() first")
        process = subprocess.Popen(["ip", "netns", "exec", ns, *argv], **popen_kwargs)
        self._processes.append(process)
        return process

    def link_counters(self, ref: LinkVeth | Link | str | tuple[str, str]) -> LinkCounters:
        """Bytes and packets each end of the link has sent (kernel counters of the veth ends)."""
        v = self.link(ref)
        sent = {}
        for site in (v.from_site, v.to_site):
            ns, ifname = self.sites[site].namespace, v.end(site)[0]
            out = _run(["ip", "-n", ns, "-s", "-j", "link", "show", "dev", ifname], what=f"counters of link {v.name}")
            try:
                tx = json.loads(out)[0]["stats64"]["tx"]
                sent[site] = (int(tx["bytes"]), int(tx["packets"]))
            except (ValueError, LookupError, TypeError) as exc:
                raise SiteNetworkError(f"counters of link {v.name}: unexpected output of `ip -s -j link` ({exc})") from None
        return LinkCounters(v.name, v.from_site, v.to_site, sent[v.from_site][0], sent[v.to_site][0],
                            sent[v.from_site][1], sent[v.to_site][1])

    def link_states(self) -> dict[str, tuple[bool, LinkCounters]]:
        """Every link: (up, counters), up when both its ends are; one `ip -s -j link` per namespace."""
        ends: dict[tuple[str, str], tuple[bool, int, int]] = {}
        for s in self.sites.values():
            out = _run(["ip", "-n", s.namespace, "-s", "-j", "link", "show"], what=f"links of site {s.site}")
            try:
                for dev in json.loads(out):
                    tx = dev["stats64"]["tx"]
                    up = "UP" in dev.get("flags", ()) and "LOWER_UP" in dev.get("flags", ())
                    ends[(s.site, dev["ifname"].split("@")[0])] = (up, int(tx["bytes"]), int(tx["packets"]))
            except (ValueError, LookupError, TypeError) as exc:
                raise SiteNetworkError(f"links of site {s.site}: unexpected output of `ip -s -j link` ({exc})") from None
        states = {}
        for v in self.links:
            a = ends.get((v.from_site, v.from_if), (False, 0, 0))
            b = ends.get((v.to_site, v.to_if), (False, 0, 0))
            states[v.name] = (a[0] and b[0], LinkCounters(v.name, v.from_site, v.to_site, a[1], b[1], a[2], b[2]))
        return states

    def set_link(self, ref: LinkVeth | Link | str | tuple[str, str], up: bool) -> None:
        """Cut (``up=False``) or restore a link: both veth ends down or up.

        Down removes the routes over the link at both ends, so connections across it fail at once
        (no route) instead of rerouting; up brings the ends back and restores those routes.
        """
        v = self.link(ref)
        state = "up" if up else "down"
        for site in (v.from_site, v.to_site):
            _run(["ip", "-n", self.sites[site].namespace, "link", "set", "dev", v.end(site)[0], state],
                 what=f"setting link {v.name} {state}")
        if up:
            for site in (v.from_site, v.to_site):
                batch = self._route_batch(site)
                if batch:
                    _run(["ip", "-n", self.sites[site].namespace, "-batch", "-"], stdin=batch,
                         what=f"restoring routes of site {site}")

    # -- tearing down --------------------------------------------------------------------------

    def destroy(self) -> None:
        """Stop the processes `run` started, then remove the namespaces this object created.

        Idempotent. A namespace that something else still holds open lives on until that exits.
        """
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(STOP_TIMEOUT_S)
        self._processes.clear()
        problems, kept = [], []
        # The kernel frees a deleted namespace's devices later; the host ends go now, so that their
        # names and routes are free at once.
        for ifname in self._lan_ifs:
            subprocess.run(["ip", "link", "del", ifname], capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False)
        self._lan_ifs.clear()
        for ns in reversed(self._created):
            try:
                _run(["ip", "netns", "del", ns], what="removing a site namespace")
            except SiteNetworkError as exc:
                if (NETNS_DIR / ns).exists():  # still there: keep it, so that destroy() can try again
                    problems.append(str(exc))
                    kept.append(ns)
        self._created = kept[::-1]
        if problems:
            raise SiteNetworkError("; ".join(problems))

    @property
    def created(self) -> tuple[str, ...]:
        """The namespaces this object created and has not removed yet."""
        return tuple(self._created)

    def __enter__(self) -> "SiteNetwork":
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.destroy()
