"""Parity models (ParM) against their baselines on real agents (issue 15).

The AI City pipeline (examples/aicity-parm) with re-ID on 2 data workers plus one extra device,
used five ways, at equal cost (the same 3 hub mini-PCs are paid in all four):
- none:        the extra device idles (2 re-ID workers, no redundancy);
- balance:     the extra device is a third re-ID replica (the broker balances items over 3);
- replication: the same 3 replicas, and the detector's agent sends an item again when no replica
               served it after --resend-ms (at most twice; `resend` in the workflow), so a copy
               goes round to another replica and the first output wins;
- backup:      the extra device runs a cheap backup model on every item (`redundancy: {parity: 1}`,
               the shipped width-0.5 network distilled from reid-w100), which stands in for a late output;
- parm:        the extra device is the parity worker (k = 2, the shipped parity model).
Each runs a synthetic scene three times: without a fault (the IDF1 reference), with one re-ID
worker stalled by SIGSTOP for 200 ms about once a second, and with it killed outright a third of
the way in (the controller takes over its session and re-plans). Printed per run: p50, p99,
p99.9 and max re-ID latency per frame (the tracker's agent receiving a frame's re-ID output,
less the detector sending it), IDF1 (the challenge's multi-camera one, and per camera), the share
of re-ID outputs rebuilt from parity or served from a re-sent copy, frames lost and doubled. Then replication's p99.9 over
ParM's (the target: >= 1.5x) and each IDF1 against its no-fault run (the target: within 1 point). A frame dropped or not delivered
counts as infinitely late. A silent agent's work is re-planned after 3 s (the controller's outage
budget; the default 60 s suits links that come back).

Run: .venv/bin/python benchmarks/parm.py [--seconds 30] [--cameras 4]. One broker and 6 agent
processes per run on this machine; the machine is shared, so quote medians of repeated runs.
"""

from __future__ import annotations

import argparse
import fcntl
import math
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from jellybean.agents.broker import MosquittoBroker, find_mosquitto
from jellybean.agents.deployment import Deployment, build_assignments
from jellybean.agents.processes import stop_processes
from jellybean.cli.run import agent_names, spawn_agents, start_controller
from jellybean.planner.build import build_problem, check_references, load_inputs
from jellybean.planner.strategies import make_plan
from jellybean.replay.cityflow import open_dataset
from jellybean.replay.driver import BrokerReplay
from jellybean.replay.outcome import build_result, predictions
from jellybean.replay.scene import SceneConfig, write_scene
from jellybean.replay.tracking_metrics import evaluate_mtmc

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "aicity-parm"
CONFIGS = ("none", "balance", "replication", "backup", "parm")
FAULTS = ("no fault", "stall", "kill")
STALL_S, STALL_EVERY_S = 0.2, 1.0
OUTAGE_S = 3.0


def inputs_for(config: str, root: Path, resend_ms: float = 60.0, decode_wait_ms: float | None = None):
    """examples/aicity-parm as `config` runs it; every config keeps re-ID at reid-w100."""
    root.mkdir(parents=True, exist_ok=True)
    wf = yaml.safe_load((EXAMPLE / "workflow.yaml").read_text())
    for op in wf["operators"]:
        if config == "backup" and "redundancy" in op:
            op["redundancy"]["parity"] = 1
        if config in ("parm", "backup") and "redundancy" in op and decode_wait_ms is not None:
            op["redundancy"]["decode_wait_ms"] = decode_wait_ms
        elif config not in ("parm", "backup"):
            if op.pop("redundancy", None) is not None and config == "replication":
                op["resend"] = {"after_ms": resend_ms, "times": 2}
    zoo_path = (EXAMPLE / "zoo.yaml").resolve()
    zoo = yaml.safe_load(zoo_path.read_text())
    for op in zoo["operators"]:
        if op["name"] == "reid":
            op["variants"] = [v for v in op["variants"] if v["name"] == "reid-w100"]
        for v in op["variants"]:
            if v.get("model"):
                v["model"] = str((zoo_path.parent / v["model"]).resolve())
            for m in v.get("parity", []):
                m["model"] = str((zoo_path.parent / m["model"]).resolve())
    infra = yaml.safe_load((EXAMPLE / "infrastructure.yaml").read_text())
    infra["hardware_catalog"] = [str((EXAMPLE / c).resolve()) for c in infra["hardware_catalog"]]
    if config not in ("parm", "backup"):
        # Planned on the two mini-PCs re-ID needs, so that the tracker stays in the cloud as in ParM's plan.
        for site in infra["sites"]:
            if site["name"] == "hub":
                site["hardware"] = {"hub-x86-minipc": 2}
    for name, doc in (("workflow", wf), ("zoo", zoo), ("infrastructure", infra)):
        (root / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    inputs = load_inputs(root / "workflow.yaml", root / "zoo.yaml", root / "infrastructure.yaml")
    check_references(inputs)
    plan = make_plan(build_problem(inputs), "optimal", time_limit=20, inputs=inputs.paths)
    if config in ("balance", "replication"):
        # The third mini-PC, which ParM gives the parity model, serves as a third re-ID replica.
        workers = tuple(w.model_copy(update={"count": 3, "capacity": w.capacity * 3 / w.count})
                        if w.operator == "reid" else w for w in plan.workers)
        plan = plan.model_copy(update={"workers": workers})
    return Deployment(plan=plan, inputs=inputs, zoo_dir=root)


@dataclass
class Run:
    config: str
    fault: str
    frames: int = 0
    lost: int = 0
    doubled: int = 0
    dropped: int = 0
    latencies_ms: list[float] | None = None
    rebuilt: int = 0
    resent: int = 0
    idf1: float = 0.0
    idf1_camera: float = 0.0
    wall_s: float = 0.0
    segments: str = ""
    slowest: list[str] | None = None

    def pct(self, q: float) -> float:
        """The q-th percentile, by rank (inf when the frames at that rank were not delivered)."""
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def reid_latency_ms(trace: list[list]) -> float | None:
    """The detector's send to the tracker's agent receiving the frame's re-ID output."""
    sent = next((t[3] for t in trace if len(t) >= 4 and t[1] == "detect"), None)
    got = next((t[2] for t in trace if len(t) >= 4 and t[1] == "track"), None)
    return (got - sent) * 1000.0 if sent is not None and got is not None else None


def per_camera_idf1(scenario, data) -> float:
    m = evaluate_mtmc(scenario, predictions(data), cameras=sorted(data.published))
    boxes = sum(c.gt_boxes for c in m.per_camera.values())
    return sum(c.idf1 * c.gt_boxes for c in m.per_camera.values()) / boxes if boxes else 0.0


def run_once(config: str, fault: str, scenario, work: Path, seconds: float, seed: int, resend_ms: float,
             decode_wait_ms: float | None = None) -> Run:
    dep = inputs_for(config, work / "inputs", resend_ms, decode_wait_ms)
    names = agent_names(dep, per_worker=True)
    sites: dict[str, list[str]] = {}
    for name, site in names.items():
        sites.setdefault(site, []).append(name)
    tasks = {a: [t.operator for t in asg.tasks] for a, asg in build_assignments(dep, sites, 1).items()}
    victim = sorted(a for a, ops in tasks.items() if ops == ["reid"])[0]
    broker = MosquittoBroker(None, None, workdir=work / "broker", executable=find_mosquitto()).start()
    broker.wait_ready()
    procs = spawn_agents(dep, broker.url, work, per_worker=True)
    # A silent agent's work is re-planned after OUTAGE_S (the default 60 s suits links that come back).
    controller = start_controller(dep, broker.url, None, 60.0, 5000.0, quiet=True, expect=tuple(names),
                                  outage_budget=OUTAGE_S)
    watch = threading.Thread(target=controller.run, daemon=True)
    watch.start()
    done = threading.Event()
    rng = random.Random(seed)

    def inject() -> None:
        pid = procs[victim].pid
        if fault == "stall":
            while not done.wait(STALL_EVERY_S * rng.uniform(0.7, 1.3)):
                os.kill(pid, signal.SIGSTOP)
                time.sleep(STALL_S)   # the fault itself
                os.kill(pid, signal.SIGCONT)
        elif fault == "kill":
            if not done.wait(seconds / 3):
                os.kill(pid, signal.SIGKILL)

    started, started_wall = time.perf_counter(), time.time()
    injector = threading.Thread(target=inject, daemon=True)
    try:
        injector.start()
        data = BrokerReplay(broker.url, speed=1.0, drain_s=60).run(scenario)
        done.set()
        injector.join(timeout=10)
        result = build_result(data, scenario, dep.plan, evaluate=True)
    finally:
        done.set()
        if procs[victim].poll() is None:
            os.kill(procs[victim].pid, signal.SIGCONT)
        for e in controller.events:
            if any(w in e.what for w in ("gone", "took over", "re-plan", "offline", "unreachable")):
                print(f"    controller, {e.at - started_wall:6.1f} s: {e.what}")
        controller.stop()
        stop_processes(procs.values())
        broker.stop()
    delivered = data.sink.snapshot()
    t = result.totals()
    # A frame dropped or never delivered counts as infinitely late: percentiles over every frame published.
    lat = [x if d.dropped is None and (x := reid_latency_ms(d.trace)) is not None else math.inf
           for d in delivered.values()] + [math.inf] * t.lost
    return Run(config, fault, frames=len(delivered), lost=t.lost, doubled=t.duplicates, dropped=t.dropped,
               latencies_ms=lat, rebuilt=sum("reid" in d.reconstructed for d in delivered.values()),
               resent=sum("reid" in d.resent for d in delivered.values()),
               idf1=result.tracking.idf1 if result.tracking else 0.0, idf1_camera=per_camera_idf1(scenario, data),
               wall_s=time.perf_counter() - started,
               segments="; ".join(f"{g.name} p50 {g.ms.p50:.1f} p99 {g.ms.p99:.1f}" for g in result.segments),
               slowest=[f"{k[0]}/{k[1]} {reid_latency_ms(d.trace) or float('nan'):.0f} ms"
                        f"{' rebuilt' if 'reid' in d.reconstructed else ''}: "
                        + " ".join(f"{t[1]}@{t[0]} {1000 * (t[2] - data.clock_start):.0f}-{1000 * (t[3] - data.clock_start):.0f}"
                                   for t in d.trace if len(t) >= 4)
                        for k, d in sorted(delivered.items(), key=lambda kd: -(reid_latency_ms(kd[1].trace) or 0))[:8]])


def machine_lock():
    """Hold the machine for this benchmark: a second one beside it (or this one twice) makes both
    measure each other. Waits, saying so, while another holds it."""
    handle = open(Path(tempfile.gettempdir()) / "jellybean-parm-benchmark.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("another benchmarks/parm.py is running on this machine; waiting for it to end", flush=True)
        fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="scene length")
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--repeat", type=int, default=1, help="runs of each config and fault; medians printed")
    parser.add_argument("--resend-ms", type=float, default=60.0,
                        help="replication: send an item again when no replica served it after this")
    parser.add_argument("--decode-wait-ms", type=float, default=None,
                        help="parm and backup: the decoder's wait (the workflow's redundancy.decode_wait_ms; "
                             "default: the example's)")
    parser.add_argument("--segments", action="store_true", help="print where each run's latency goes, per stage and hop, and the slowest frames' traces")
    args = parser.parse_args()
    if find_mosquitto() is None:
        sys.exit("benchmarks/parm.py needs Mosquitto (make install puts it on the machine)")
    lock = machine_lock()   # noqa: F841 - held until the process ends
    work = Path(tempfile.mkdtemp(prefix="jb-parm-"))
    write_scene(work / "scene", SceneConfig(cameras=args.cameras, seconds=args.seconds, seed=21))
    scenario = open_dataset(work / "scene").scenarios[0]
    runs: list[Run] = []
    configs, faults = args.configs.split(","), args.faults.split(",")
    # Repeats go round the configs, so that the shared machine's slow minutes fall on all of them.
    for rep in range(args.repeat):
        for k, fault in enumerate(faults):
            for config in configs:
                r = run_once(config, fault, scenario, work / f"{config}-{k}-{rep}", args.seconds, seed=k,
                             resend_ms=args.resend_ms, decode_wait_ms=args.decode_wait_ms)
                runs.append(r)
                print(f"{config:<12} {fault:<9} frames {r.frames:>5} lost {r.lost} doubled {r.doubled} dropped {r.dropped:>3}  "
                      f"re-ID latency p50 {r.pct(50):7.1f} p99 {r.pct(99):7.1f} p99.9 {r.pct(99.9):7.1f} "
                      f"max {r.pct(100):7.1f} ms  IDF1 {r.idf1:.4f} (per camera "
                      f"{r.idf1_camera:.4f})  rebuilt {r.rebuilt / max(1, r.frames):.1%} re-sent "
                      f"{r.resent / max(1, r.frames):.1%}  ({r.wall_s:.0f} s)", flush=True)
                if args.segments:
                    print(f"    segments (ms): {r.segments}", flush=True)
                    for line in r.slowest or []:
                        print(f"    slow: {line}", flush=True)
    by: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        by.setdefault((r.config, r.fault), []).append(r)

    def med(config: str, fault: str, q: float) -> float:
        return statistics.median(r.pct(q) for r in by[config, fault])

    def idf1(config: str, fault: str) -> float:
        return statistics.median(r.idf1 for r in by[config, fault])

    if args.repeat > 1:
        print(f"\nmedians of {args.repeat} runs each")
        for (config, fault), rs in by.items():
            print(f"{config:<12} {fault:<9} p50 {med(config, fault, 50):7.1f} p99 {med(config, fault, 99):7.1f} "
                  f"p99.9 {med(config, fault, 99.9):7.1f} max {med(config, fault, 100):7.1f} ms  IDF1 "
                  f"{idf1(config, fault):.4f}  rebuilt {statistics.median(r.rebuilt / max(1, r.frames) for r in rs):.1%}  "
                  f"re-sent {statistics.median(r.resent / max(1, r.frames) for r in rs):.1%}  "
                  f"lost {sum(r.lost for r in rs)} doubled {sum(r.doubled for r in rs)}")
    print("\nratios (the targets: replication / ParM p99.9 >= 1.5; IDF1 within 1 point of the run without a fault)")
    for fault in ("stall", "kill"):
        if ("parm", fault) not in by:
            continue
        parm = med("parm", fault, 99.9)
        for other in ("replication", "balance", "backup"):
            if (other, fault) in by:
                base = med(other, fault, 99.9)
                print(f"  {fault}: p99.9 {other} {base:.1f} ms / ParM {parm:.1f} ms = {base / parm:.2f}x; p99.9 - p50: "
                      f"{other} {base - med(other, fault, 50):.1f}, ParM {parm - med('parm', fault, 50):.1f} ms")
    for config in configs:
        for fault in ("stall", "kill"):
            if (config, "no fault") in by and (config, fault) in by:
                ref, got = idf1(config, "no fault"), idf1(config, fault)
                print(f"  {config} {fault}: IDF1 {got:.4f} vs {ref:.4f} without a fault ({100 * (got - ref):+.2f} points)")
    print(f"\nmedian wall per run {statistics.median(r.wall_s for r in runs):.0f} s; work files in {work}")


if __name__ == "__main__":
    main()
