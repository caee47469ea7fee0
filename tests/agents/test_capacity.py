"""Plan and run agree on capacity: an agent saturated with one detector task delivers the items/s
that the plan assigns its worker, which come from `zoo profile` measuring the operator as the agent
runs it. Both rates are measured in this test, on this machine, so load on the machine hits both."""

from __future__ import annotations

import queue
import shutil
import statistics
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from jellybean.agents import topics
from jellybean.agents.broker import MosquittoBroker, find_mosquitto, free_port
from jellybean.agents.deployment import Deployment, build_assignments
from jellybean.agents.items import decode_item, encode_item
from jellybean.agents.messages import Heartbeat, parse_message
from jellybean.agents.processes import stop_processes
from jellybean.cli.run import spawn_agents
from jellybean.planner.build import build_problem, load_inputs
from jellybean.planner.strategies import make_plan
from jellybean.zoo.profile import measure_operator, profile_zoo
from jellybean.zoo.saturate import AgentBench
from jellybean.zoo.saturate import WARM_S
from jellybean.zoo.workload import synthetic_frames
from agent_logs import print_agent_tracebacks
from mqtt_probe import Probe

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "model_zoo" / "aicity" / "detector_w050.onnx"
pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="needs Mosquitto (make test installs it)")
HARDWARE = "local-cpu"
# This shared 2-core VM wanders: one agent delivers 180-330 items/s over 3 s windows in the same
# minute, and longer windows wander as much (216-277 over 8 s). Measured seconds apart, the
# profile and the agent read 0.86-1.31 of each other (median 1.00 over 15 rounds); measured back
# to back, in alternating order, 0.86-1.11. So the test measures them back to back, many times:
# `zoo profile` itself once, then its harness (`measure_operator` on an `AgentBench`) again.
ROUNDS = 7
PROFILE_S = (2.0, 3.0)  # the seconds the profile times: min and max
AGENT_S = 2.0  # the seconds the test times the agent, after WARM_S
PROFILE_FRAMES = 60


def write_specs(root: Path, cameras: int) -> dict[str, Path]:
    zoo = root / "zoo"
    zoo.mkdir()
    shutil.copy(MODEL, zoo / MODEL.name)
    (zoo / "manifest.yaml").write_text(yaml.safe_dump({
        "kind": "model-zoo", "name": "capacity", "operators": [{
            "name": "detect", "task": "detection",
            # A placeholder profile, so that the agent can be planned and started before the
            # first round: every round's profile replaces it.
            "variants": [{"name": "det-w050", "model": MODEL.name, "accuracy": 0.9,
                          "profiles": {HARDWARE: {"latency_ms": 4.0}}}]}]}))
    (root / "hardware.yaml").write_text(yaml.safe_dump({"kind": "hardware", "hardware": [
        {"name": HARDWARE, "tier": "edge", "price_per_hour": 0.01, "memory_mb": 4000}]}))
    (root / "workflow.yaml").write_text(yaml.safe_dump({
        "kind": "workflow", "name": "capacity", "sources": [{"name": "camera", "rate": 10, "item_kb": 86}],
        "operators": [{"name": "detect", "inputs": ["camera"]}], "edges": []}))
    (root / "infrastructure.yaml").write_text(yaml.safe_dump({
        "kind": "infrastructure", "name": "one-box", "hardware_catalog": ["hardware.yaml"],
        "sites": [{"name": "box", "tier": "edge", "hardware": {HARDWARE: 1}, "sources": {"camera": cameras}}],
        "links": []}))
    return {"zoo": zoo / "manifest.yaml", "workflow": root / "workflow.yaml",
            "infrastructure": root / "infrastructure.yaml"}


class Saturator:
    """Publishes frames to the agent's data topic with `window` in flight and times the outputs."""

    def __init__(self, url: str, workflow: str, window: int) -> None:
        self.url = url
        self.window = threading.Semaphore(window)
        self.outputs: queue.Queue[float] = queue.Queue()
        self.errors: list[str] = []
        self.probe = Probe(url)
        assert self.probe.connect() == 0
        self.probe.client.on_message = self._on_message
        self.probe.subscribe_granted(topics.sink(workflow))

    def wait_running(self, agent: str, operator: str, timeout: float = 120.0) -> None:
        """Until the agent's heartbeat says it runs `operator` (frames sent before it subscribed would
        reach no one)."""
        beats = Probe(self.url)
        assert beats.connect() == 0
        try:
            beats.subscribe_granted(topics.heartbeat(agent))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                _, payload, _ = beats.messages.get(timeout=max(0.1, deadline - time.monotonic()))
                if operator in parse_message(payload, "heartbeat", Heartbeat).running:
                    return
            raise AssertionError(f"agent {agent} did not start {operator} within {timeout:.0f} s")
        finally:
            beats.client.loop_stop()
            beats.client.disconnect()

    def _on_message(self, client, userdata, msg) -> None:
        try:
            item = decode_item(msg.payload, msg.topic)
        except Exception as exc:  # noqa: BLE001 - paho would swallow it; the test reports it
            self.errors.append(f"{msg.topic}: {exc}")
            return
        if item.dropped is not None:
            self.errors.append(f"{item.stream}/{item.frame} dropped: {item.dropped}")
        self.outputs.put(time.perf_counter())
        self.window.release()

    def rate(self, frames: list, count: int, warmup: int, session: str) -> float:
        """Items/s the agent returns once its queue is never empty and it is warm, timed as the profile
        times it (`jellybean.zoo.saturate`): the outputs of the first WARM_S seconds and the first
        `warmup` ones untimed (a model just loaded runs slower), then to the last of `count`."""
        payloads = [encode_item(replace(frames[k % len(frames)], stream="cam", session=session, frame=k + 1,
                                        capture_ts=time.time()))
                    for k in range(count)]
        times: list[float] = []

        def collect() -> None:
            for _ in range(count):
                times.append(self.outputs.get(timeout=60))

        collector = threading.Thread(target=collect, daemon=True)
        collector.start()
        for payload in payloads:
            assert self.window.acquire(timeout=60), f"the agent stopped answering: {self.errors[:5]}"
            self.probe.client.publish(topics.data("box", "detect"), payload, qos=1)
        collector.join(timeout=120)
        assert len(times) == count, f"{len(times)} of {count} frames came back"
        assert not self.errors, self.errors[:5]
        first = next(k for k, t in enumerate(times) if k >= warmup and t - times[0] >= WARM_S)
        assert count - 1 - first >= 100, f"only {count - 1 - first} outputs timed"
        return (count - 1 - first) / (times[-1] - times[first])

    def close(self) -> None:
        self.probe.client.loop_stop()
        self.probe.client.disconnect()


def group_capacity(plan) -> float:
    """Items/s the plan assigns one worker of its one group."""
    (group,) = plan.workers
    return group.capacity / group.count


def test_a_saturated_agent_delivers_the_capacity_the_plan_assigns(tmp_path):
    paths = write_specs(tmp_path, cameras=2)
    frames, _ = synthetic_frames(PROFILE_FRAMES)  # the frames the profile measures on
    broker = MosquittoBroker(None, free_port(), workdir=tmp_path / "broker", executable=find_mosquitto()).start()
    broker.wait_ready()
    procs = {}
    saturator = None
    try:
        # The deployed agent runs (idle) through every profile, so that both measurements share
        # the machine alike.
        inputs = load_inputs(paths["workflow"], paths["zoo"], paths["infrastructure"])
        dep = Deployment(plan=make_plan(build_problem(inputs), "optimal", time_limit=20, inputs=inputs.paths),
                         inputs=inputs, zoo_dir=paths["zoo"].parent)
        procs = spawn_agents(dep, broker.url, tmp_path)
        assignment = build_assignments(dep, {"box": ["box"]}, 1, drop_after_ms=1e9)["box"]
        saturator = Saturator(broker.url, dep.workflow, window=8)
        saturator.probe.client.publish(topics.assignment("box"), assignment.to_bytes(), qos=1, retain=True)
        saturator.wait_running("box", "detect")
        # `zoo profile` as a user runs it: the plan's capacity is the items/s it recorded.
        profile_zoo(paths["zoo"].parent, HARDWARE, batch_sizes=[1], intra_op_threads=1, frames=PROFILE_FRAMES,
                    warmup=20, runs=200, min_seconds=PROFILE_S[0], max_seconds=PROFILE_S[1], isolate=False)
        inputs = load_inputs(paths["workflow"], paths["zoo"], paths["infrastructure"])
        capacity = group_capacity(make_plan(build_problem(inputs), "optimal", time_limit=20, inputs=inputs.paths))
        recorded = inputs.zoo.operators[0].variants[0].profiles[HARDWARE].throughput[1]
        assert capacity == pytest.approx(recorded, rel=1e-3), (capacity, recorded)
        measured = saturator.rate(frames, count=int(capacity * (AGENT_S + WARM_S)), warmup=20, session="r0")
        ratios = [measured / capacity]
        print(f"zoo profile: plan capacity {capacity:.1f} items/s, agent {measured:.1f} items/s, "
              f"ratio {ratios[0]:.3f}")
        # Then the profile's own measurement on an agent started as `zoo profile` starts it,
        # back to back with the deployed agent's, in alternating order (drift hits both alike).
        bench = AgentBench(broker.url, paths["zoo"].parent, HARDWARE, 1, tmp_path / "bench", name="bench")
        try:
            for round_ in range(1, ROUNDS):
                def profiled() -> float:
                    return measure_operator(bench, assignment.tasks[0], frames, [1], warmup=20, runs=200,
                                            min_seconds=PROFILE_S[0], max_seconds=PROFILE_S[1])["throughput"][1]

                def delivered(expect: float) -> float:
                    return saturator.rate(frames, count=int(expect * (AGENT_S + WARM_S)), warmup=20,
                                          session=f"r{round_}")

                if round_ % 2:
                    capacity = profiled()
                    measured = delivered(capacity)
                else:
                    measured = delivered(capacity)
                    capacity = profiled()
                ratios.append(measured / capacity)
                print(f"round {round_}: profiled {capacity:.1f} items/s, agent {measured:.1f} items/s, "
                      f"ratio {ratios[-1]:.3f}")
        finally:
            bench.close()
        ratio = statistics.median(ratios)
        assert 0.85 <= ratio <= 1.15, ratios
    finally:
        if saturator is not None:
            saturator.close()
        stop_processes(procs.values())
        broker.stop()
        print_agent_tracebacks(tmp_path)
