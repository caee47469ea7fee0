"""Cameras per machine: the whole AI City pipeline on this machine, deployed as `jellybean up`
deploys it, with N synthetic cameras at 10 fps in real time, against the limit the operators'
profiles predict for this machine's cores.

    python benchmarks/cameras.py [--seconds 20] [--zoo DIR] [--start N] [--max N]

1. Profiles. The example's zoo (examples/aicity: detector, re-ID, tracker, association, with the
   shipped models) is copied and profiled here as hardware `local-cpu` with 1 intra-op thread, as
   `up` runs its agents (`zoo profile`: each variant in a real agent, saturated through a broker),
   unless --zoo names a zoo profiled so before.
2. Prediction. The plan for one camera fixes each operator's items/s per camera (10 frames, 5.5
   crops per frame, ...) and its variant. Each variant's profile gives the agent's CPU time per
   item (`cpu_ms`, all its threads). Their products summed are the CPU milliseconds one camera
   costs per second; the cores (what this process may use) divided by that is the most cameras
   the operators' profiles allow. The broker's and the cameras' own work are not in it: the
   benchmark measures them and prints the limit with them taken off too.
3. Measurement. The example's workflow on one site `box` with N cameras and `local-cpu` machines,
   planned (`make_plan`), with one agent process per planned worker (`up --agent-per-worker`), a
   local Mosquitto and the controller, and a synthetic scene of N cameras replayed into it in real
   time (replay: decode the video, encode JPEGs, publish). N holds when at most 1 % of the frames
   published are dropped or reach the sink later than the SLO (1 s after capture). Starting at the
   prediction, N goes up while it holds and down while it does not.

CPU shares are from /proc: the agents, Mosquitto, and this process (replay and controller).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from jellybean.agents.broker import start_local_broker
from jellybean.agents.deployment import Deployment
from jellybean.agents.processes import stop_processes
from jellybean.cli.run import spawn_agents, start_controller
from jellybean.planner.build import build_problem, load_inputs
from jellybean.planner.strategies import make_plan
from jellybean.replay.cityflow import open_dataset
from jellybean.replay.driver import BrokerReplay
from jellybean.replay.outcome import build_result
from jellybean.replay.scene import SceneConfig, write_scene
from jellybean.spec.base import load_model
from jellybean.spec.zoo import Zoo
from jellybean.zoo.profile import profile_zoo
from jellybean.zoo.procfs import cpu_seconds

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "aicity"
HARDWARE = "local-cpu"
SLO_MS = 1000.0
MAX_BAD = 0.01
console = Console(width=None if sys.stdout.isatty() else 140)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# -- specs ----------------------------------------------------------------------------------------

def profiled_zoo(work: Path, given: Path | None, seconds: float) -> Path:
    """The example's zoo with the shipped models, profiled here as `local-cpu` (or the one given)."""
    if given is not None:
        return given
    zoo_dir = work / "zoo"
    zoo_dir.mkdir(parents=True, exist_ok=True)
    doc = yaml.safe_load((EXAMPLE / "zoo.yaml").read_text())
    for op in doc["operators"]:
        for v in op["variants"]:
            v["profiles"] = {}   # the example's illustrative figures are not this machine's
            if v.get("model"):
                src = (EXAMPLE / v["model"]).resolve()
                shutil.copy(src, zoo_dir / src.name)
                v["model"] = src.name
    (zoo_dir / "manifest.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    console.print(f"profiling the example's zoo here as {HARDWARE} (1 thread, as `up` runs agents)...")
    t0 = time.monotonic()
    profile_zoo(zoo_dir, HARDWARE, batch_sizes=[1, 4], intra_op_threads=1, warmup=20, runs=200,
                min_seconds=min(3.0, seconds), max_seconds=6.0)
    console.print(f"profiled in {time.monotonic() - t0:.0f} s -> {zoo_dir / 'manifest.yaml'}")
    return zoo_dir


def write_example(work: Path, zoo_dir: Path, cameras: int, machines: int) -> dict[str, Path]:
    """The example's workflow on one site of `local-cpu` machines with `cameras` cameras."""
    d = work / f"example-{cameras}"
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLE / "workflow.yaml", d / "workflow.yaml")
    (d / "zoo.yaml").write_text((zoo_dir / "manifest.yaml").read_text())
    for f in zoo_dir.glob("*.onnx"):
        if not (d / f.name).exists():
            os.symlink(f, d / f.name)
    (d / "hardware.yaml").write_text(yaml.safe_dump({"kind": "hardware", "hardware": [{
        "name": HARDWARE, "tier": "edge", "price_per_hour": 0.05, "memory_mb": 20000,
        "description": "this machine: a worker is an agent process sharing its cores"}]}))
    (d / "infrastructure.yaml").write_text(yaml.safe_dump({
        "kind": "infrastructure", "name": "this-machine", "hardware_catalog": ["hardware.yaml"],
        "sites": [{"name": "box", "tier": "edge", "hardware": {HARDWARE: machines}, "sources": {"camera": cameras}}],
        "links": []}))
    return {k: d / f"{k}.yaml" for k in ("workflow", "zoo", "infrastructure")}


# -- prediction -----------------------------------------------------------------------------------

@dataclass
class Prediction:
    per_camera_ms: float                  # CPU ms per second of one camera
    parts: list[tuple[str, str, float, float]]   # (operator, variant, items/s per camera, cpu ms per item)

    def cameras(self, cores_left: float) -> float:
        return 1000.0 * cores_left / self.per_camera_ms


def predict(work: Path, zoo_dir: Path) -> Prediction:
    paths = write_example(work, zoo_dir, cameras=1, machines=8)
    inputs = load_inputs(paths["workflow"], paths["zoo"], paths["infrastructure"])
    problem = build_problem(inputs)
    plan = make_plan(problem, "optimal", time_limit=30, inputs=inputs.paths)
    zoo = load_model(Zoo, paths["zoo"])
    parts = []
    for op in problem.operators:
        variant = plan.variants[op.name]
        profile = zoo.operator(op.name).variant(variant).profiles[HARDWARE]
        if profile.cpu_ms is None:
            raise SystemExit(f"{op.name}/{variant}: its profile has no cpu_ms; profile the zoo again")
        parts.append((op.name, variant, op.rate, profile.cpu_ms))
    return Prediction(sum(rate * ms for _, _, rate, ms in parts), parts)


# -- measurement ----------------------------------------------------------------------------------

@dataclass
class Trial:
    cameras: int
    published: int
    dropped: int
    late: int
    lost: int
    p50_ms: float
    p99_ms: float
    workers: int
    variants: dict[str, str]
    cpu: dict[str, float]                 # share of one core: agents, broker, replay+controller
    seconds: float

    @property
    def bad(self) -> float:
        return (self.dropped + self.late + self.lost) / max(1, self.published)

    @property
    def holds(self) -> bool:
        return self.bad <= MAX_BAD


def run_trial(work: Path, zoo_dir: Path, scenario, cameras: int, seconds: float, preload: bool) -> Trial:
    paths = write_example(work, zoo_dir, cameras, machines=4 + cameras)
    inputs = load_inputs(paths["workflow"], paths["zoo"], paths["infrastructure"])
    plan = make_plan(build_problem(inputs), "optimal", time_limit=30, inputs=inputs.paths)
    dep = Deployment(plan=plan, inputs=inputs, zoo_dir=paths["zoo"].parent)
    run_dir = work / f"run-{cameras}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    broker = start_local_broker(run_dir / "broker")
    procs = {}
    controller = None
    try:
        procs = spawn_agents(dep, broker.url, run_dir, per_worker=True)
        controller = start_controller(dep, broker.url, None, 120.0, 5000.0, True, expect=tuple(procs))
        watch = threading.Thread(target=controller.run, daemon=True)
        watch.start()
        scene = replace(scenario, cameras=scenario.cameras[:cameras])
        # Mosquitto runs as a child process; the embedded broker would run in this one.
        broker_pid = getattr(broker, "pid", None)
        pids = {"agents": [p.pid for p in procs.values()], "broker": [broker_pid] if broker_pid else []}
        marks: dict[str, tuple[float, dict[str, float], float]] = {}

        def clock(event: str) -> None:
            # CPU over the real-time part only: not the preloading, not the drain after it.
            marks[event] = (time.monotonic(), {k: sum(cpu_seconds(pid) or 0.0 for pid in v) for k, v in pids.items()},
                            time.process_time())

        data = BrokerReplay(broker.url, speed=1.0, drain_s=10.0, limit_s=seconds, preload=preload,
                            on_clock=clock).run(scene)
        (t0, cpu0, own0), (t1, cpu1, own1) = marks["start"], marks["published"]
        wall = t1 - t0
        cpu = {k: (cpu1[k] - cpu0[k]) / wall for k in pids}
        cpu["replay+controller"] = (own1 - own0) / wall
    finally:
        if controller is not None:
            controller.stop()
        stop_processes(procs.values())
        broker.stop()
    result = build_result(data, scene, plan, evaluate=False)
    t = result.totals()
    lat = result.latency_ms
    late = sum(1 for x in lat if x > SLO_MS)
    return Trial(cameras=cameras, published=t.frames_in, dropped=t.dropped, late=late, lost=t.lost,
                 p50_ms=_pct(lat, 50), p99_ms=_pct(lat, 99), workers=sum(w.count for w in plan.workers),
                 variants=dict(plan.variants), cpu=cpu, seconds=wall)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    k = min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))
    return sorted(values)[k]


# -- main -----------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds of video per trial")
    ap.add_argument("--zoo", type=Path, help="a copy of the example's zoo already profiled as local-cpu")
    ap.add_argument("--start", type=int, help="first N to try (default: the prediction)")
    ap.add_argument("--max", type=int, default=24, help="most cameras to try")
    ap.add_argument("--work", type=Path, help="keep the work directory here")
    ap.add_argument("--encode-live", action="store_true",
                    help="decode and JPEG-encode frames during the replay (default: beforehand, `replay --preload`, "
                         "as cameras that encode their own frames)")
    args = ap.parse_args()
    n_cores = cores()
    work = args.work or Path(tempfile.mkdtemp(prefix="jb-cameras-"))
    work.mkdir(parents=True, exist_ok=True)
    zoo_dir = profiled_zoo(work, args.zoo, args.seconds)
    pred = predict(work, zoo_dir)
    predicted = pred.cameras(n_cores)
    console.print(f"prediction: {pred.per_camera_ms:.1f} CPU ms per camera-second; {n_cores} cores -> "
                  f"{predicted:.1f} cameras")
    console.print(f"writing a scene of {args.max} cameras x {args.seconds:g} s ...")
    write_scene(work / "scene", SceneConfig(cameras=args.max, seconds=args.seconds, seed=7, overwrite=True))
    scenario = open_dataset(work / "scene").scenarios[0]

    trials: dict[int, Trial] = {}

    def trial(n: int) -> Trial:
        if n not in trials:
            t = run_trial(work, zoo_dir, scenario, n, args.seconds, not args.encode_live)
            trials[n] = t
            console.print(f"N={n:>2}: {'holds' if t.holds else 'FAILS'}: {t.published} frames, "
                          f"{t.dropped} dropped, {t.late} late, {t.lost} lost ({100 * t.bad:.2f} %), "
                          f"p50 {t.p50_ms:.0f} ms, p99 {t.p99_ms:.0f} ms, {t.workers} agents; CPU (cores) "
                          + ", ".join(f"{k} {v:.2f}" for k, v in t.cpu.items()), highlight=False)
        return trials[n]

    n = max(1, min(args.max, args.start or int(predicted)))
    if trial(n).holds:
        while n < args.max and trial(n + 1).holds:
            n += 1
        best = n
    else:
        while n > 1 and not trial(n - 1).holds:
            n -= 1
        best = n - 1
    report(pred, predicted, n_cores, trials, best, args.encode_live)


def report(pred: Prediction, predicted: float, n_cores: int, trials: dict[int, Trial], best: int,
           live: bool) -> None:
    table = Table(title="operators per camera (the plan's variants, the profiles' CPU per item)", title_justify="left")
    for col in ("operator", "variant", "items/s per camera", "agent CPU ms per item", "CPU ms per camera-second"):
        table.add_column(col, justify="left" if col in ("operator", "variant") else "right", no_wrap=True)
    for op, var, rate, ms in pred.parts:
        table.add_row(op, var, f"{rate:.2f}", f"{ms:.3f}", f"{rate * ms:.1f}")
    table.add_row("all", "", "", "", f"{pred.per_camera_ms:.1f}")
    console.print(table)
    table = Table(title=f"N cameras at 10 fps on {n_cores} cores, real time; holds at <= {100 * MAX_BAD:g} % "
                        f"dropped or later than {SLO_MS:.0f} ms", title_justify="left")
    for col in ("N", "holds", "frames", "dropped", "late", "lost", "bad %", "p50 ms", "p99 ms", "agents",
                "agents CPU", "broker CPU", "replay+ctl CPU"):
        table.add_column(col, justify="right", no_wrap=True)
    for n in sorted(trials):
        t = trials[n]
        table.add_row(str(n), "yes" if t.holds else "no", str(t.published), str(t.dropped), str(t.late), str(t.lost),
                      f"{100 * t.bad:.2f}", f"{t.p50_ms:.0f}", f"{t.p99_ms:.0f}", str(t.workers),
                      f"{t.cpu['agents']:.2f}", f"{t.cpu['broker']:.2f}", f"{t.cpu['replay+controller']:.2f}")
    console.print(table)
    if best < 1:
        console.print("no N held; even one camera drops or is late")
        return
    t = trials[best]
    others = t.cpu["broker"] + t.cpu["replay+controller"]
    left = max(0.1, n_cores - others)
    console.print(f"measured: {best} cameras hold (p50 {t.p50_ms:.0f} ms, p99 {t.p99_ms:.0f} ms)", highlight=False)
    need = best * pred.per_camera_ms / 1000.0
    console.print(f"at N={best} the agents used {t.cpu['agents']:.2f} cores; the profiles say {best} cameras need "
                  f"{need:.2f}: measured / predicted CPU = {t.cpu['agents'] / need:.2f}", highlight=False)
    console.print(f"predicted from the profiles on {n_cores} cores: {predicted:.1f} cameras; measured / predicted = "
                  f"{best / predicted:.2f}", highlight=False)
    source = "video decode, JPEG encode, publish" if live else "publish; frames encoded beforehand"
    console.print(f"at N={best} the broker took {t.cpu['broker']:.2f} cores and the source side (replay: {source}; "
                  f"and the controller) {t.cpu['replay+controller']:.2f} "
                  f"({100 * t.cpu['replay+controller'] / n_cores:.0f} % of the machine); with those taken off, "
                  f"{left:.2f} cores are left to the agents and the profiles predict {pred.cameras(left):.1f} cameras: "
                  f"measured / predicted = {best / pred.cameras(left):.2f}", highlight=False)


if __name__ == "__main__":
    main()
