"""A city as isolated sites: 10 intersections, 3 hubs, an edge datacenter and a cloud, each a network
namespace with its own Mosquitto, bridged over links shaped to their bandwidth, running the AI City
pipeline on this machine's 2 cores (issue 13's bar).

    python benchmarks/sites.py [--seconds 30] [--fps 5] [--cameras-per-intersection 1] [--json FILE]

1. The city, written into a work directory: int-01..int-10 (tier edge, a Jetson Orin Nano each, N
   cameras), hub-1..hub-3 (N mini-PCs each; int-k is linked to hub-((k-1) mod 3 + 1) at 100
   Mbit/s), edc (an edge datacenter; every hub is linked to it at 500 Mbit/s) and cloud (edc is
   linked to it at 200 Mbit/s). The links' latencies are in the file for the planner, but this kernel has no netem, so
   they are not emulated: the links are tbf-shaped veth pairs. The workflow and the zoo are
   examples/aicity's as they are (the zoo's model paths resolve against examples/aicity). The
   optimal planner puts detection (det-w050, the lighter detector) at the intersections, re-ID
   (reid-w050) at the hubs, tracking and association in the cloud, and no worker at edc: its broker
   only relays hub -> cloud.
2. The run, as `jellybean up --isolate` runs it (`SiteBrokers`): 15 namespaces and 15 Mosquittos
   (TLS, bridges with persistent sessions), one agent per site the plan uses (14, 1 intra-op thread
   each) inside its site's namespace against its own broker, the controller in this process at its
   site's broker (cloud), and a synthetic scene (640x360, seed 7) replayed in real time: each
   camera publishes at its own intersection's broker over that site's LAN. The frames are JPEG-encoded
   before the clock starts (`replay --preload`), as cameras that encode their own; --encode-live
   encodes them during the replay. The workflow is planned for 10 fps; by default the scene records
   at 5 fps, because at 10 fps the 2 cores are full (97 % busy) and the latency grows without bound
   (the association in the cloud falls behind); --fps 10 shows it. The plan's figures are scaled to
   the load replayed.
3. The figures.
   - Per link and direction: the plan's KB/s at the load the replay offered (`result.load`), the
     payload measured (the replay's and the agents' byte counts per (site, destination); a hop
     over several links, such as hub-1 -> cloud, counts on every link of its path), and the bytes
     on the link's wire (veth counters: MQTT, TLS, TCP/IP and Ethernet headers, the bridges' control
     traffic, heartbeats and metrics included), from the replay's clock start until the results have
     drained, per second of video.
   - End-to-end latency (capture -> sink) percentiles; frames in / delivered / dropped / lost /
     duplicates (as with `up --isolate`, an item is dropped as late only past the outage budget +
     5 s); where the latency goes (stages and hops from the delivered frames' traces).
   - CPU over the replay's real-time part (clock start -> last frame published), from /proc: all
     Mosquittos together (the bridges run inside them), the agents, this process (replay and
     controller), the wire sampler's `ip -s link` commands, and the whole machine's busy CPU
     (/proc/stat, kernel included: veth forwarding and tbf run in softirq, charged to no process);
     also the same while the deployment is up and idle for --idle-seconds before the replay. Per
     broker: CPU, and RSS (VmRSS) right after the brokers start (bridges up, nothing else
     connected), once everything is connected (just before the replay), at its end, and the peak.
     /proc counts CPU in 10 ms ticks: over 10 s idle, one tick is 0.001 of a core.

Needs root, `ip netns` and Mosquitto. Builds its sites on SiteBrokers' default subnet, 10.213.0.0/16
(the isolated-run tests use 10.214.0.0/16); only one such benchmark or `up --isolate` at a time. Anything
else running on the machine shows as "rest" in the CPU table, and slows the association (see README).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from jellybean.agents.deployment import Deployment
from jellybean.agents.processes import stop_processes
from jellybean.cli.replay import open_scenario
from jellybean.cli.run import agent_names, spawn_agents, start_controller
from jellybean.planner.build import build_problem, load_inputs
from jellybean.planner.strategies import make_plan
from jellybean.replay.driver import BrokerReplay
from jellybean.replay.outcome import build_result
from jellybean.replay.scene import SceneConfig, write_scene
from jellybean.sites import available
from jellybean.sites.brokers import SiteBrokers
from jellybean.zoo.procfs import cpu_seconds, status_kb

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "aicity"
INTERSECTIONS, HUBS = 10, 3
OUTAGE_BUDGET_S = 60.0
console = Console(width=None if sys.stdout.isatty() else 160)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# -- the city -------------------------------------------------------------------------------------

def intersection(k: int) -> str:
    return f"int-{k:02d}"


def hub_of(k: int) -> str:
    return f"hub-{(k - 1) % HUBS + 1}"


def write_city(work: Path, cameras: int) -> Path:
    """The infrastructure file: 10 intersections with `cameras` cameras each, 3 hubs (as many
    mini-PCs each as cameras per intersection), an edge datacenter, a cloud."""
    sites, links = [], []
    for k in range(1, INTERSECTIONS + 1):
        sites.append({"name": intersection(k), "tier": "edge", "hardware": {"jetson-orin-nano-8gb": 1},
                      "sources": {"camera": cameras}})
        links.append({"from": intersection(k), "to": hub_of(k), "bandwidth_mbps": 100, "latency_ms": 3})
    for h in range(1, HUBS + 1):
        # A mini-PC's re-ID serves about 5 cameras (the zoo's profile); a hub gathers 3-4 intersections.
        sites.append({"name": f"hub-{h}", "tier": "hub", "hardware": {"hub-x86-minipc": cameras}})
        links.append({"from": f"hub-{h}", "to": "edc", "bandwidth_mbps": 500, "latency_ms": 5})
    sites.append({"name": "edc", "tier": "edge-dc", "hardware": {"edc-cpu-server": 1}})
    sites.append({"name": "cloud", "tier": "cloud", "hardware": {"c6i.xlarge": 3}})
    links.append({"from": "edc", "to": "cloud", "bandwidth_mbps": 200, "latency_ms": 20, "cost_per_gb": 0.02})
    path = work / "infrastructure.yaml"
    path.write_text(yaml.safe_dump({"kind": "infrastructure", "name": "benchmark-city",
                                    "hardware_catalog": [str(REPO / "tiers")], "sites": sites, "links": links},
                                   sort_keys=False))
    return path


# -- /proc ----------------------------------------------------------------------------------------

def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat (busy: not idle, not iowait)."""
    with open("/proc/stat", encoding="ascii") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    total = sum(values[:8])   # guest time is already inside user and nice
    return total - values[3] - values[4], total


@dataclass
class Mark:
    """One look at the CPU of everything the benchmark runs."""

    t: float
    brokers: dict[str, float]           # site -> CPU s
    agents: dict[str, float]            # agent -> CPU s
    own: float                          # this process, all threads
    children: float                     # finished children of this process (the wire sampler's `ip`)
    busy: int
    total: int

    @classmethod
    def take(cls, broker_pids: dict[str, int], agent_pids: dict[str, int]) -> Mark:
        t = os.times()
        busy, total = machine_jiffies()
        return cls(time.monotonic(), {s: cpu_seconds(p) or 0.0 for s, p in broker_pids.items()},
                   {a: cpu_seconds(p) or 0.0 for a, p in agent_pids.items()},
                   time.process_time(), t.children_user + t.children_system, busy, total)


def rss_mb(pids: dict[str, int], field_: str = "VmRSS") -> dict[str, float]:
    return {k: (status_kb(field_, p) or 0) / 1024 for k, p in pids.items()}


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return math.nan
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))]


# -- one run --------------------------------------------------------------------------------------

@dataclass
class Run:
    cameras: int
    seconds: float
    fps: float
    plan: object
    result: object
    links: list[dict] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)       # role -> cores over the real-time part
    wall_s: float = 0.0
    machine_busy: float = 0.0                                   # cores busy, whole machine
    brokers: list[dict] = field(default_factory=list)
    agents: list[dict] = field(default_factory=list)
    sites_tier: dict[str, str] = field(default_factory=dict)
    parts: list[dict] = field(default_factory=list)            # latency by segment, all sites pooled
    idle: dict = field(default_factory=dict)                    # cores while deployed and idle


def run(work: Path, cameras_per_int: int, seconds: float, fps: float, preload: bool, time_limit: float,
        idle_s: float) -> Run:
    infra_path = write_city(work, cameras_per_int)
    inputs = load_inputs(EXAMPLE / "workflow.yaml", EXAMPLE / "zoo.yaml", infra_path)
    plan = make_plan(build_problem(inputs), "optimal", time_limit=time_limit, inputs=inputs.paths)
    tiers = {s.name: s.tier for s in inputs.infrastructure.sites}
    cameras = cameras_per_int * INTERSECTIONS
    console.print(f"plan: {plan.solver.status}, variants "
                  + ", ".join(f"{o}={v}" for o, v in plan.variants.items())
                  + "; workers " + ", ".join(sorted({f"{w.operator}@{tiers[w.location]}" for w in plan.workers})),
                  highlight=False)
    console.print(f"writing a scene of {cameras} cameras x {seconds:g} s at {fps:g} fps ...")
    scene_dir = work / "scene"
    write_scene(scene_dir, SceneConfig(cameras=cameras, seconds=seconds, fps=fps, seed=7, overwrite=True))
    scenario = open_scenario(scene_dir, None)

    dep = Deployment(plan=plan, inputs=inputs, zoo_dir=EXAMPLE)
    names = agent_names(dep)
    run_dir = work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    t_start = time.monotonic()
    sites = SiteBrokers(dep, run_dir / "brokers", names, outage_budget_s=OUTAGE_BUDGET_S)
    procs: dict = {}
    controller = None
    try:
        sites.start()
        broker_pids = sites.pids()
        time.sleep(2.0)   # the bridges connect
        rss_started = rss_mb(broker_pids)
        console.print(f"{len(broker_pids)} sites (namespaces and brokers) up in {time.monotonic() - t_start:.1f} s; "
                      f"starting {len(names)} agents ...", highlight=False)
        procs = spawn_agents(dep, sites.agent_urls(), run_dir, ca=sites.ca, wrap=sites.wraps())
        agent_pids = {name: p.pid for name, p in procs.items()}
        controller = start_controller(dep, sites.controller_url, sites.ca, 180.0, 5000.0 + OUTAGE_BUDGET_S * 1000.0,
                                      True, takeover=sites.takeover_url, outage_budget=OUTAGE_BUDGET_S)
        threading.Thread(target=controller.run, name="controller", daemon=True).start()
        console.print(f"deployed after {time.monotonic() - t_start:.1f} s; controller at {sites.controller_at}; "
                      f"{idle_s:g} s idle, then replaying{' (frames encoded beforehand)' if preload else ''} ...",
                      highlight=False)
        idle0 = Mark.take(broker_pids, agent_pids)
        time.sleep(idle_s)
        idle1 = Mark.take(broker_pids, agent_pids)

        wire = sites.wire_recorder()
        marks: dict[str, Mark] = {}
        rss: dict[str, dict[str, float]] = {}

        def clock(event: str) -> None:
            if event == "start":
                rss["connected"] = rss_mb(broker_pids)
            marks[event] = Mark.take(broker_pids, agent_pids)
            wire.on_clock(event)
            if event == "published":
                rss["end"] = rss_mb(broker_pids)
                rss["agents_end"] = rss_mb(agent_pids)

        data = BrokerReplay(sites.url(sites.controller_at, "replay"), ca=sites.ca, site_urls=sites.replay_urls(),
                            on_clock=clock, drain_s=30.0, limit_s=seconds, preload=preload).run(scenario)
        data.wire, data.wire_samples = wire.measured(), list(wire.samples)
        rss["peak"] = rss_mb(broker_pids, "VmHWM")
        parts = latency_parts(data)
        compute = defaultdict(list)   # operator -> each agent's own processing latency (ms, p50/p95/p99)
        for m in data.agent_metrics.values():
            for o in m.operators:
                if o.latency_ms:
                    compute[o.operator].append(o.latency_ms)
        for p in parts:
            if p["kind"] == "stage" and compute.get(p["segment"]):
                p["compute_p50_ms"] = max(c.get("p50", math.nan) for c in compute[p["segment"]])
                p["compute_p95_ms"] = max(c.get("p95", math.nan) for c in compute[p["segment"]])
        network = sites.network
        link_paths = {(a, b): _directed_path(network, a, b) for a in tiers for b in tiers if a != b}
        links = [(v.from_site, v.to_site, v.bandwidth_mbps) for v in network.links]
    finally:
        if controller is not None:
            controller.stop()
        stop_processes(procs.values())
        sites.stop()
    result = build_result(data, scenario, plan, evaluate=False)
    out = Run(cameras=cameras, seconds=seconds, fps=fps, plan=plan, result=result, sites_tier=tiers, parts=parts)
    idle_wall = idle1.t - idle0.t
    out.idle = {"brokers": {s: (idle1.brokers[s] - idle0.brokers[s]) / idle_wall for s in broker_pids},
                "agents": {a: (idle1.agents[a] - idle0.agents[a]) / idle_wall for a in agent_pids},
                "machine": (idle1.busy - idle0.busy) / max(1, idle1.total - idle0.total) * cores(),
                "seconds": idle_wall}
    out.links = link_table(result, plan, links, link_paths)

    m0, m1 = marks["start"], marks["published"]
    wall = out.wall_s = m1.t - m0.t
    out.machine_busy = (m1.busy - m0.busy) / max(1, m1.total - m0.total) * cores()
    brokers_cpu = {s: (m1.brokers[s] - m0.brokers[s]) / wall for s in broker_pids}
    agents_cpu = {a: (m1.agents[a] - m0.agents[a]) / wall for a in agent_pids}
    out.cpu = {"brokers (Mosquitto + bridges)": sum(brokers_cpu.values()),
               "agents": sum(agents_cpu.values()),
               "this process (replay + controller)": (m1.own - m0.own) / wall,
               "wire sampler (`ip -s link`)": (m1.children - m0.children) / wall}
    degree = defaultdict(int)
    for a, b, _ in links:
        degree[a] += 1
        degree[b] += 1
    out.brokers = [{"site": s, "tier": tiers[s], "bridged_links": degree[s], "cpu_cores": brokers_cpu[s],
                    "cpu_idle_cores": out.idle["brokers"][s],
                    "rss_started_mb": rss_started[s], "rss_connected_mb": rss["connected"][s],
                    "rss_end_mb": rss["end"][s], "rss_peak_mb": rss["peak"][s]} for s in tiers]
    out.agents = [{"agent": a, "site": names[a], "tier": tiers[names[a]], "cpu_cores": agents_cpu[a],
                   "cpu_idle_cores": out.idle["agents"][a],
                   "rss_end_mb": rss["agents_end"][a]} for a in agent_pids]
    return out


def latency_parts(data) -> list[dict]:
    """The delivered frames' latency split as `jellybean report` splits it (a stage: an operator at a
    site, from the item's arrival to its output leaving; a hop: the brokers and links from one step's
    output to the next step's input), each segment pooled over the sites it runs at."""
    samples: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    where: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    order: dict[tuple[str, str, str], int] = {}
    tier = {"int": "intersection", "hub": "hub", "edc": "edc", "clo": "cloud"}

    def add(key, position: int, ms: float, sites: str) -> None:
        samples[key].append(ms)
        where[key].add(sites)
        order[key] = min(order.get(key, position), position)

    for d in data.sink.snapshot().values():
        if d.dropped or not d.trace:
            continue
        prev, site, t = "camera", data.camera_sites.get(d.stream, "?"), d.capture_ts
        for i, entry in enumerate(d.trace):
            at, op, t_in, t_out = str(entry[0]), str(entry[1]), float(entry[2]), float(entry[3])
            add(("hop", f"{prev} -> {op}", f"{tier.get(site[:3], site)} -> {tier.get(at[:3], at)}"), 2 * i,
                1000 * (t_in - t), f"{site}->{at}")
            add(("stage", op, tier.get(at[:3], at)), 2 * i + 1, 1000 * (t_out - t_in), at)
            prev, site, t = op, at, t_out
        add(("hop", f"{prev} -> sink", f"{tier.get(site[:3], site)} -> replay"), 2 * len(d.trace),
            1000 * (d.received_ts - t), site)
    return [{"kind": k[0], "segment": k[1], "where": k[2], "sites": len(where[k]), "n": len(v),
             "mean_ms": statistics.fmean(v), "p50_ms": pct(v, 50), "p95_ms": pct(v, 95), "p99_ms": pct(v, 99)}
            for k, v in sorted(samples.items(), key=lambda kv: order[kv[0]])]


def _directed_path(network, source: str, target: str) -> list[tuple[str, str]]:
    """The (from, to) hops of the links traffic from source to target crosses, in order."""
    hops, here = [], source
    for name in network.path(source, target):
        there = network.link(name).peer(here)
        hops.append((here, there))
        here = there
    return hops


def link_table(result, plan, links, link_paths) -> list[dict]:
    """Per link and direction: the plan at the load replayed, the payload measured along the paths,
    and the wire."""
    seconds_payload: dict[tuple[str, str], float] = defaultdict(float)   # KB/s per directed link
    for m in result.links:
        if m.kb_per_s and (m.from_, m.to) in link_paths:
            for hop in link_paths[(m.from_, m.to)]:
                seconds_payload[hop] += m.kb_per_s
    wire = {(m.from_, m.to): m.wire_kb_per_s for m in result.links if m.wire_kb_per_s is not None}
    planned = {(u.from_, u.to): u.kb_per_s for u in plan.links}
    load = result.load or 0.0
    rows = []
    for a, b, mbps in links:
        for x, y in ((a, b), (b, a)):
            plan_kb = planned.get((x, y), 0.0) * load
            w = wire.get((x, y))
            rows.append({"from": x, "to": y, "bandwidth_mbps": mbps, "plan_kb_per_s": plan_kb,
                         "payload_kb_per_s": seconds_payload.get((x, y), 0.0), "wire_kb_per_s": w,
                         "wire_over_plan": w / plan_kb if plan_kb and w is not None else None})
    return rows


# -- report ---------------------------------------------------------------------------------------

def f(value, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def report(r: Run) -> dict:
    res = r.result
    t = res.totals()
    lat = res.latency_ms
    table = Table(title=f"links, per direction (KB/s per second of video; load replayed {f(res.load, '.3f')} "
                        "of the plan's)",
                  title_justify="left")
    for col in ("link", "Mbit/s", "plan KB/s", "payload KB/s", "wire KB/s", "wire / plan", "wire / payload"):
        table.add_column(col, justify="left" if col == "link" else "right", no_wrap=True)
    for row in r.links:
        p = row["payload_kb_per_s"]
        table.add_row(f"{row['from']} -> {row['to']}", f"{row['bandwidth_mbps']:g}", f(row["plan_kb_per_s"], ".2f"),
                      f(p, ".2f"), f(row["wire_kb_per_s"], ".2f"), f(row["wire_over_plan"], ".3f"),
                      f(row["wire_kb_per_s"] / p if p and row["wire_kb_per_s"] is not None else None, ".3f"))
    used = [x for x in r.links if x["plan_kb_per_s"]]
    tot_plan = sum(x["plan_kb_per_s"] for x in used)
    tot_wire = sum(x["wire_kb_per_s"] or 0.0 for x in used)
    tot_pay = sum(x["payload_kb_per_s"] for x in used)
    table.add_row("all planned directions", "", f(tot_plan, ".2f"), f(tot_pay, ".2f"), f(tot_wire, ".2f"),
                  f(tot_wire / tot_plan if tot_plan else None, ".3f"),
                  f(tot_wire / tot_pay if tot_pay else None, ".3f"))
    unused = [x for x in r.links if not x["plan_kb_per_s"]]
    table.add_row("all other directions (control only)", "", "0.00",
                  f(sum(x["payload_kb_per_s"] for x in unused), ".2f"),
                  f(sum(x["wire_kb_per_s"] or 0.0 for x in unused), ".2f"), "-", "-")
    console.print(table)
    ratios = [x["wire_over_plan"] for x in used if x["wire_over_plan"] is not None]
    if ratios:
        console.print(f"wire / plan over the {len(ratios)} planned directions: median {statistics.median(ratios):.3f}, "
                      f"min {min(ratios):.3f}, max {max(ratios):.3f}", highlight=False)

    table = Table(title=f"end to end ({r.cameras} cameras at {r.fps:g} fps, {r.seconds:g} s of video, real time)",
                  title_justify="left")
    for col in ("p50 ms", "p95 ms", "p99 ms", "max ms", "frames in", "delivered", "dropped", "of which late", "lost",
                "duplicates"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_row(f(pct(lat, 50), ".0f"), f(pct(lat, 95), ".0f"), f(pct(lat, 99), ".0f"),
                  f(max(lat, default=None), ".0f"),
                  str(t.frames_in), str(t.frames_out), str(t.dropped), str(t.late), str(t.lost), str(t.duplicates))
    console.print(table)
    if r.parts:
        table = Table(title="where the latency goes (a stage: queue + batch + compute at a site; a hop: the brokers, "
                            "bridges and links between two steps), pooled over the sites", title_justify="left")
        for col in ("", "segment", "where", "sites", "mean ms", "p50 ms", "p95 ms", "p99 ms",
                    "compute p50 / p95 ms (agent's own, worst site)"):
            table.add_column(col, justify="left" if col in ("", "segment", "where") else "right", no_wrap=True)
        for p in r.parts:
            table.add_row(p["kind"], p["segment"], p["where"], str(p["sites"]), f"{p['mean_ms']:.1f}",
                          f"{p['p50_ms']:.1f}", f"{p['p95_ms']:.1f}", f"{p['p99_ms']:.1f}",
                          f"{f(p.get('compute_p50_ms'), '.1f')} / {f(p.get('compute_p95_ms'), '.1f')}"
                          if "compute_p50_ms" in p else "")
        console.print(table)

    n = cores()
    whole = r.machine_busy
    table = Table(title=f"CPU over the replay's real-time part ({r.wall_s:.1f} s; cores = CPU s / wall s; "
                        f"{n} cores)", title_justify="left")
    for col in ("role", "processes", "cores", "% of the machine's busy CPU", f"% of {n} cores",
                f"cores when idle ({r.idle['seconds']:.0f} s before)"):
        table.add_column(col, justify="left" if col == "role" else "right", no_wrap=True)
    counts = {"brokers (Mosquitto + bridges)": len(r.brokers), "agents": len(r.agents),
              "this process (replay + controller)": 1, "wire sampler (`ip -s link`)": "2/s x 15"}
    idle = {"brokers (Mosquitto + bridges)": sum(r.idle["brokers"].values()), "agents": sum(r.idle["agents"].values())}
    for role, c in r.cpu.items():
        table.add_row(role, str(counts[role]), f"{c:.3f}", f"{100 * c / whole:.1f}", f"{100 * c / n:.1f}",
                      f(idle.get(role), ".3f"))
    rest = whole - sum(r.cpu.values())
    table.add_row("rest (kernel: veth, tbf, softirq; other processes)", "", f"{rest:.3f}", f"{100 * rest / whole:.1f}",
                  f"{100 * rest / n:.1f}", "")
    table.add_row("whole machine, busy", "", f"{whole:.3f}", "100.0", f"{100 * whole / n:.1f}",
                  f"{r.idle['machine']:.3f}")
    console.print(table)

    table = Table(title="each site's broker (Mosquitto; its bridges run inside it): CPU over the real-time part, "
                        "RSS (MB)", title_justify="left")
    for col in ("site", "tier", "links bridged", "cores idle", "cores", "% of busy CPU", "RSS started", "RSS connected",
                "RSS end", "RSS peak"):
        table.add_column(col, justify="left" if col in ("site", "tier") else "right", no_wrap=True)
    for b in r.brokers:
        table.add_row(b["site"], b["tier"], str(b["bridged_links"]), f"{b['cpu_idle_cores']:.4f}",
                      f"{b['cpu_cores']:.4f}", f"{100 * b['cpu_cores'] / whole:.2f}", f"{b['rss_started_mb']:.2f}",
                      f"{b['rss_connected_mb']:.2f}",
                      f"{b['rss_end_mb']:.2f}", f"{b['rss_peak_mb']:.2f}")
    for name, fn in (("median", statistics.median), ("max", max)):
        table.add_row(name, "", "", f"{fn(b['cpu_idle_cores'] for b in r.brokers):.4f}",
                      f"{fn(b['cpu_cores'] for b in r.brokers):.4f}",
                      f"{100 * fn(b['cpu_cores'] for b in r.brokers) / whole:.2f}",
                      *(f"{fn(b[k] for b in r.brokers):.2f}" for k in ("rss_started_mb", "rss_connected_mb",
                                                                        "rss_end_mb", "rss_peak_mb")))
    console.print(table)

    table = Table(title="agents by tier (one per site the plan uses, 1 intra-op thread)", title_justify="left")
    for col in ("tier", "agents", "operators", "cores idle (sum)", "cores (sum)", "cores per agent (median)",
                "RSS per agent MB (median)"):
        table.add_column(col, justify="left" if col in ("tier", "operators") else "right", no_wrap=True)
    ops = defaultdict(set)
    for w in r.plan.workers:
        ops[r.sites_tier[w.location]].add(f"{w.operator}={w.variant}")
    by_tier = defaultdict(list)
    for a in r.agents:
        by_tier[a["tier"]].append(a)
    for tier, agents in by_tier.items():
        table.add_row(tier, str(len(agents)), ", ".join(sorted(ops[tier])),
                      f"{sum(a['cpu_idle_cores'] for a in agents):.3f}", f"{sum(a['cpu_cores'] for a in agents):.3f}",
                      f"{statistics.median(a['cpu_cores'] for a in agents):.3f}",
                      f"{statistics.median(a['rss_end_mb'] for a in agents):.1f}")
    console.print(table)

    med_cpu = statistics.median(b["cpu_cores"] for b in r.brokers)
    med_rss = statistics.median(b["rss_end_mb"] for b in r.brokers)
    idle_rss = statistics.median(b["rss_started_mb"] for b in r.brokers)
    all_brokers = r.cpu["brokers (Mosquitto + bridges)"]
    med_idle = statistics.median(b["cpu_idle_cores"] for b in r.brokers)
    console.print(f"a site's broker: {idle_rss:.1f} MB RSS idle (median, bridges up), {med_rss:.1f} MB at the end "
                  f"(median; max {max(b['rss_end_mb'] for b in r.brokers):.1f}); "
                  f"{100 * med_idle:.2f} % of a core idle, "
                  f"{100 * med_cpu:.2f} % during the replay "
                  f"(median; max {100 * max(b['cpu_cores'] for b in r.brokers):.2f} %). All {len(r.brokers)} brokers: "
                  f"{all_brokers:.3f} cores, {100 * all_brokers / whole:.1f} % of the machine's busy CPU.",
                  highlight=False)
    return {"cameras": r.cameras, "seconds_of_video": r.seconds, "load": res.load, "links": r.links,
            "latency_ms": {"p50": pct(lat, 50), "p95": pct(lat, 95), "p99": pct(lat, 99),
                           "max": max(lat, default=None)},
            "frames": t.model_dump(), "wall_s": r.wall_s, "cores": n, "machine_busy_cores": whole, "cpu_cores": r.cpu,
            "brokers": r.brokers, "agents": r.agents, "variants": dict(r.plan.variants), "fps": r.fps,
            "idle": r.idle, "latency_parts": r.parts}


# -- main -----------------------------------------------------------------------------------------

def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="seconds of video replayed")
    ap.add_argument("--cameras-per-intersection", type=int, default=1, help="cameras at each of the 10 intersections")
    ap.add_argument("--fps", type=float, default=5.0,
                    help="frames per second the scene's cameras record (the workflow plans for 10; the plan's figures "
                         "are scaled to the load replayed)")
    ap.add_argument("--encode-live", action="store_true",
                    help="decode and JPEG-encode frames during the replay (default: beforehand, as cameras that encode "
                         "their own frames)")
    ap.add_argument("--idle-seconds", type=float, default=10.0,
                    help="seconds to measure the deployment's CPU while it is up and idle, before the replay")
    ap.add_argument("--time-limit", type=float, default=30.0, help="planner time limit, s")
    ap.add_argument("--work", type=Path,
                    help="keep the work directory (plan inputs, scene, broker configs, agent logs, result.json)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    ok, why = available()
    if not ok:
        raise SystemExit(f"cannot build site namespaces: {why}")
    signal.signal(signal.SIGTERM, _interrupted)   # `kill PID` cleans up as Ctrl-C does: brokers, agents, namespaces
    work = args.work or Path(tempfile.mkdtemp(prefix="jb-sites-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    done = False
    try:
        r = run(work, args.cameras_per_intersection, args.seconds, args.fps, not args.encode_live, args.time_limit,
                args.idle_seconds)
        (work / "result.json").write_text(r.result.to_json())   # the replay's own result (`jellybean report` reads it)
        doc = report(r)
        done = True
    finally:
        if args.work is None and done:
            shutil.rmtree(work, ignore_errors=True)
        elif not done:
            console.print(f"the work directory (agent and broker logs) is kept: {work}", highlight=False)
    console.print(f"wall clock: {time.monotonic() - t0:.0f} s", highlight=False)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2, default=str))
        console.print(f"figures -> {args.json}")


if __name__ == "__main__":
    main()
