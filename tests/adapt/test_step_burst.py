"""Issue 14's bar on real agents: a step trace 0.6x -> 1.8x -> 0.6x of the rate at which the most
accurate plan saturates fixed hardware (one detector box, no elastic tier), run under the
hardware-only policy and under Loki's (`deploy --adapt`).

One module-scoped run of each (profiling the box, writing the scene, two replays: about two
minutes); the tests read the figures and print them all."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import _require_mosquitto
from one_box import write_one_box
from jellybean.adapt.runtime import AdaptOptions
from jellybean.adapt.simulate import SimSettings, prepare, simulate
from jellybean.agents.broker import MosquittoBroker, free_port
from jellybean.agents.deployment import Deployment
from jellybean.agents.processes import stop_processes
from jellybean.cli.replay import open_scenario
from jellybean.cli.run import spawn_agents, start_controller
from jellybean.planner.build import build_problem, load_inputs
from jellybean.planner.strategies import make_plan
from jellybean.replay.driver import BrokerReplay
from jellybean.replay.outcome import build_result, predictions
from jellybean.replay.scene import SceneConfig, write_scene
from jellybean.replay.trace import read_trace
from jellybean.replay.tracking_metrics import evaluate_mtmc
from jellybean.zoo.profile import profile_zoo

DEADLINE_MS = 1000.0
CAMERAS = 4
LOW, HIGH = 0.6, 1.8           # of the most accurate plan's saturation rate
BEFORE, BURST, AFTER = 4, 8, 10    # seconds of each phase
SETTLE_S = 2.0                 # IDF1 after the return: from this long after the switch back
OPTIONS = dict(period_s=1.0, tau_s=1.0, rise_tau_s=0.5, elastic=False)


def _specs(root: Path) -> Path:
    return write_one_box(root, "step", [
        {"name": "det-w100", "model": "detector_w100.onnx", "accuracy": 0.926, "memory_mb": 300},
        {"name": "det-w050-s2", "model": "detector_w050.onnx", "accuracy": 0.578, "memory_mb": 200,
         "params": {"stride": 2}},
        {"name": "det-w050-s4", "model": "detector_w050.onnx", "accuracy": 0.45, "memory_mb": 200,
         "params": {"stride": 4}},
        # Past stride 4 the agent's per-frame work, not the model, bounds a box: stride 8 buys
        # about a third more frames/s, the margin a box busier than its profile needs.
        {"name": "det-w050-s8", "model": "detector_w050.onnx", "accuracy": 0.35, "memory_mb": 200,
         "params": {"stride": 8}}],
        track_accuracy=0.97, accuracy=0.926 * 0.97, latency_ms=DEADLINE_MS, cameras=CAMERAS)


@dataclass
class Run:
    policy: str
    frames: dict[str, int] = field(default_factory=dict)   # phase -> frames captured in it
    bad: dict[str, int] = field(default_factory=dict)      # phase -> late or dropped
    reasons: dict[str, int] = field(default_factory=dict)
    variants: list[tuple[float, str]] = field(default_factory=list)  # (s since start, detector) per change
    returned_s: float | None = None   # after the burst, until the most accurate variant ran again
    idf1_before: float = 0.0
    idf1_after: float = 0.0
    seconds: list[str] = field(default_factory=list)   # per second of capture: frames/dropped/late
    violations: float = 0.0          # (late + dropped) / published, the whole run
    mean_latency_ms: float = 0.0     # of the frames delivered
    sim_violations: float = 0.0      # the same, from `jellybean simulate` on the same inputs and trace
    sim_mean_latency_ms: float = 0.0
    lost: int = 0
    doubled: int = 0   # copies the sink discarded (each frame still counts once)
    derated: str = ""  # what the adapter learnt the box delivers, against its profile


@pytest.fixture(scope="module")
def step(tmp_path_factory) -> Iterator[dict[str, Run]]:
    root = tmp_path_factory.mktemp("step")
    zoo = _specs(root)
    # The plan's capacities are the runtime's: profile the box as the agents will run it.
    # (The bare model's figure, beside the agent's, is timed in this process: nothing here reads it.)
    # Four seconds a variant: the burst is sized from det-w100's figure. Beside a CPU hog, one
    # second caught a slow moment in one of four runs (hardware-only then lost 43.5 % of the burst,
    # near its 40 % bar), and two seconds once read 126 frames/s for a box that then served 143
    # (x1.11) in the run: hardware-only lost 37.6 %.
    profile_zoo(zoo, "box", batch_sizes=[1], intra_op_threads=1, operators=["detect"],
                min_seconds=4.0, max_seconds=5.0, isolate=False)
    inputs = load_inputs(root / "workflow.yaml", zoo / "manifest.yaml", root / "infrastructure.yaml")
    plan = make_plan(build_problem(inputs), "optimal", time_limit=20, inputs=inputs.paths)
    assert plan.variants["detect"] == "det-w100"
    saturation = sum(w.capacity for w in plan.workers if w.operator == "detect")   # frames/s
    recorded = CAMERAS * 10.0
    low, high = LOW * saturation / recorded, HIGH * saturation / recorded
    (root / "trace.csv").write_text(f"t,multiplier\n0,{low:.4f}\n{BEFORE},{high:.4f}\n{BEFORE + BURST},{low:.4f}\n")
    video_s = BEFORE * low + BURST * high + AFTER * low
    write_scene(root / "scene", SceneConfig(cameras=CAMERAS, seconds=video_s + 1, seed=7, width=320, height=180))
    scenario = open_scenario(root / "scene", None)
    deployment = Deployment(plan=plan, inputs=inputs, zoo_dir=zoo)
    trace = read_trace(root / "trace.csv")
    runs, data = {}, {}
    for policy in ("hardware", "loki"):
        runs[policy], data[policy] = _run(root / policy, deployment, scenario, trace, policy)
    # IDF1 at the low load over the same frames for both: before the burst, and from a little
    # after Loki went back to the most accurate variant to the end.
    after_from = BEFORE + BURST + (runs["loki"].returned_s or 0.0) + SETTLE_S
    for policy, run in runs.items():
        run.idf1_before = _idf1(scenario, data[policy], 0, BEFORE)
        run.idf1_after = _idf1(scenario, data[policy], after_from, 1e9)
    # The simulator on the same inputs, trace and policy options (issue 14, item 5).
    scenario_sim = prepare(inputs)
    for policy, run in runs.items():
        totals = simulate(scenario_sim, trace, AdaptOptions(policy=policy, **OPTIONS), SimSettings(step_s=0.1)).totals
        run.sim_violations, run.sim_mean_latency_ms = totals["violations"], totals["mean_latency_ms"] or 0.0
    with_saturation = f"saturation of det-w100 on the box {saturation:.1f} frames/s; trace {low:.3f}/{high:.3f}x"
    runs["hardware"].reasons[with_saturation] = 0
    yield runs


def _run(workdir: Path, deployment: Deployment, scenario, trace, policy: str):
    workdir.mkdir()
    run = Run(policy)
    procs, controller = {}, None
    with MosquittoBroker(None, free_port(), workdir=workdir / "broker", executable=_require_mosquitto()) as broker:
        try:
            # One agent per device, as the plan has them: the box's detector does not share a
            # process (and its interpreter) with the tracker's device.
            procs = spawn_agents(deployment, broker.url, workdir, per_worker=True)
            controller = start_controller(deployment, broker.url, None, 60.0, 5000.0, True, deadlines=True,
                                          expect=tuple(procs), adapt=AdaptOptions(policy=policy, **OPTIONS))
            threading.Thread(target=controller.run, daemon=True).start()
            data = BrokerReplay(broker.url, trace=trace, preload=True).run(scenario)
        finally:
            if controller is not None:
                controller.stop()
            stop_processes(procs.values())
    start = data.clock_start
    run.derated = controller.adapter.derating.describe() or "none"
    wall = time.time() - time.monotonic()   # the adapter decides on the monotonic clock
    last = None
    for at, decision in controller.adapter.decisions:
        variant = decision.variants()["detect"]
        if variant != last:
            run.variants.append((at + wall - start, variant))
            last = variant
    burst_end = BEFORE + BURST
    back = [t for t, v in run.variants if v == "det-w100" and t >= burst_end - 1.0]
    if run.variants and run.variants[-1][1] == "det-w100":
        run.returned_s = max(0.0, back[0] - burst_end) if back else 0.0
    delivered = list(data.sink.snapshot().values())
    phases = {"before": (0, BEFORE), "burst": (BEFORE, burst_end), "after": (burst_end, 1e9)}
    for name, (a, b) in phases.items():
        inside = [d for d in delivered if a <= d.capture_ts - start < b]
        run.frames[name] = len(inside)
        run.bad[name] = sum(1 for d in inside if d.dropped or d.latency_ms > DEADLINE_MS)
    for second in range(int(max((d.capture_ts - start for d in delivered), default=0)) + 1):
        inside = [d for d in delivered if second <= d.capture_ts - start < second + 1]
        dropped = sum(1 for d in inside if d.dropped)
        late = sum(1 for d in inside if not d.dropped and d.latency_ms > DEADLINE_MS)
        served = sorted(d.latency_ms for d in inside if not d.dropped)
        median = served[len(served) // 2] if served else 0.0
        run.seconds.append(f"{second}:{len(inside)}/{dropped}/{late}/{median:.0f}")
    for d in delivered:
        if d.dropped:
            run.reasons[d.dropped] = run.reasons.get(d.dropped, 0) + 1
    run.violations = sum(run.bad.values()) / max(1, len(delivered))
    served = [d.latency_ms for d in delivered if not d.dropped]
    run.mean_latency_ms = sum(served) / len(served) if served else 0.0
    totals = build_result(data, scenario, deployment.plan).totals()
    run.lost, run.doubled = totals.lost, totals.duplicates
    run.frames["published"] = totals.frames_in
    return run, data


def _idf1(scenario, data, a: float, b: float) -> float:
    """Per-camera IDF1 (weighted by ground-truth boxes) over the frames captured in [a, b) s.
    Per camera: the workflow tracks each camera alone, and the challenge's multi-camera IDF1
    keeps only ids that occur in two cameras, which for per-camera trackers is id-number
    coincidence."""
    frames: dict[str, set[int]] = {}
    for d in data.sink.snapshot().values():
        if a <= d.capture_ts - data.clock_start < b:
            frames.setdefault(d.stream, set()).add(d.frame)
    m = evaluate_mtmc(scenario, predictions(data), cameras=sorted(data.published), frames=frames)
    boxes = sum(c.gt_boxes for c in m.per_camera.values())
    return sum(c.idf1 * c.gt_boxes for c in m.per_camera.values()) / boxes if boxes else 0.0


def _show(runs: dict[str, Run]) -> str:
    lines = []
    for r in runs.values():
        lines.append(f"{r.policy}: frames {r.frames}, late or dropped {r.bad} "
                     f"(burst {r.bad['burst'] / max(1, r.frames['burst']):.1%}); "
                     f"detector over time {[(round(t, 1), v) for t, v in r.variants]}; "
                     f"back to det-w100 {r.returned_s} s after the burst; "
                     f"IDF1 at {LOW}x before {r.idf1_before:.4f}, after {r.idf1_after:.4f}; "
                     f"violations {r.violations:.2%} (simulated {r.sim_violations:.2%}), mean latency "
                     f"{r.mean_latency_ms:.0f} ms (simulated {r.sim_mean_latency_ms:.0f} ms); "
                     f"reasons {r.reasons}; capacities derated: {r.derated}; lost {r.lost}, duplicates discarded {r.doubled}; "
                     f"per second of capture (frames/dropped/late/median ms): {' '.join(r.seconds)}")
    return "\n".join(lines)


def _report(runs, capsys) -> None:
    with capsys.disabled():
        print("\n" + _show(runs))


def test_every_frame_ends_once(step, capsys):
    _report(step, capsys)
    for r in step.values():
        assert r.lost == 0, _show(step)
        phases = r.frames["before"] + r.frames["burst"] + r.frames["after"]
        assert phases == r.frames["published"] > 0, _show(step)


def test_loki_keeps_the_burst_within_5_percent_where_hardware_only_loses_40(step, capsys):
    _report(step, capsys)
    hw, loki = step["hardware"], step["loki"]
    assert hw.bad["burst"] >= 0.40 * hw.frames["burst"], _show(step)
    assert loki.bad["burst"] <= 0.05 * loki.frames["burst"], _show(step)
    # Loki got there by scaling accuracy down, and hardware-only never changed variant.
    assert any(v != "det-w100" for _, v in loki.variants), _show(step)
    assert [v for _, v in hw.variants] == ["det-w100"], _show(step)


def test_accuracy_returns_within_a_few_decision_periods(step, capsys):
    _report(step, capsys)
    loki = step["loki"]
    assert loki.returned_s is not None, _show(step)
    # The smoothed demand falls with tau_s; then one period to decide and one metrics interval.
    assert loki.returned_s <= 6 * OPTIONS["period_s"], _show(step)
    assert loki.bad["after"] <= 0.05 * loki.frames["after"], _show(step)


def test_idf1_at_the_low_load_is_within_2_points_of_the_static_plan(step, capsys):
    _report(step, capsys)
    # On fixed hardware, hardware-only scaling is the static most accurate plan (one variant,
    # one box): its IDF1 over the same frames is the reference.
    hw, loki = step["hardware"], step["loki"]
    assert hw.idf1_before > 0.5, _show(step)
    assert abs(loki.idf1_before - hw.idf1_before) <= 0.02, _show(step)
    assert abs(loki.idf1_after - hw.idf1_after) <= 0.02, _show(step)


def test_the_simulator_agrees_with_the_real_run_where_the_box_keeps_up(step, capsys):
    _report(step, capsys)
    # Loki's run never overloads the box: the simulator's late/dropped share must match, and its
    # mean latency be within a quarter of the deadline (it models queues and service, not the
    # broker hops between, which a loaded machine stretches: 22-162 ms real against 28-63 ms).
    loki = step["loki"]
    assert abs(loki.sim_violations - loki.violations) <= 0.02, _show(step)
    assert abs(loki.sim_mean_latency_ms - loki.mean_latency_ms) <= DEADLINE_MS / 4, _show(step)
    # Under overload they part: the real box serves well below its profiled capacity while it
    # drops (see the README); printed above, not asserted.
    assert step["hardware"].sim_violations > 0.05, _show(step)
