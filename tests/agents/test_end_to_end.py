"""plan -> broker -> three agent processes (edge, hub, cloud) -> frames in -> tracked output out.

Real Mosquitto, real agent processes, the shipped ONNX models, a synthetic scene."""

from __future__ import annotations

import os
from collections import Counter
import signal
import threading
import time
from pathlib import Path

import pytest

from jellybean.agents.broker import MosquittoBroker, find_mosquitto
from jellybean.agents.deployment import Deployment
from jellybean.agents.processes import stop_processes
from jellybean.cli.run import spawn_agents, start_controller
from jellybean.planner.build import build_problem, load_inputs
from jellybean.planner.strategies import make_plan
from jellybean.replay.cityflow import open_dataset
from jellybean.replay.driver import BrokerReplay
from jellybean.replay.outcome import build_result
from jellybean.replay.scene import SceneConfig, write_scene
from agent_logs import print_agent_tracebacks

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "aicity"


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("scene")
    write_scene(root, SceneConfig(cameras=4, seconds=12, seed=3))
    return open_dataset(root).scenarios[0]


@pytest.fixture
def running(tmp_path):
    """A broker, one agent process per planned site, and the controller, all started and ready."""
    inputs = load_inputs(EXAMPLE / "workflow.yaml", EXAMPLE / "zoo.yaml", EXAMPLE / "infrastructure.yaml")
    plan = make_plan(build_problem(inputs), "optimal", time_limit=20, inputs=inputs.paths)
    dep = Deployment(plan=plan, inputs=inputs, zoo_dir=EXAMPLE)
    broker = MosquittoBroker(None, None, workdir=tmp_path / "broker", executable=find_mosquitto()).start()
    broker.wait_ready()
    procs = spawn_agents(dep, broker.url, tmp_path)
    controller = None
    try:
        controller = start_controller(dep, broker.url, None, 60.0, 5000.0, quiet=True)
        watch = threading.Thread(target=controller.run, daemon=True)
        watch.start()
        yield dep, broker.url, procs, controller
    finally:
        if controller is not None:
            controller.stop()
        stop_processes(procs.values())
        broker.stop()
        print_agent_tracebacks(tmp_path)


def test_plan_up_frames_in_tracked_output_out(running, scene):
    dep, url, procs, controller = running
    tiers = {w.tier for w in dep.plan.workers}
    assert len(procs) >= 3 and len(tiers) >= 3, "the example plan should span three tiers"
    data = BrokerReplay(url, speed=2.0, limit_s=6.0, drain_s=20).run(scene)
    result = build_result(data, scene, dep.plan)
    total_in = sum(c.frames_in for c in result.cameras.values())
    total_out = sum(c.frames_out for c in result.cameras.values())
    print(f"\nframes in {total_in}, out {total_out}, latency {result.latency_percentiles()}, "
          f"IDF1 {result.tracking.idf1:.3f}, links {[(l.from_, l.to, round(l.kb_per_s)) for l in result.links]}")
    assert total_in >= 4 * 60
    assert total_out >= 0.95 * total_in
    assert all(c.duplicates == 0 for c in result.cameras.values())
    # Every frame crossed all three tiers' agents, in workflow order.
    d = next(iter(data.sink.snapshot().values()))
    assert [op for _, op, *_ in d.trace] == ["detect", "reid", "track", "associate"]
    assert len({site for site, *_ in d.trace}) == 3
    # Tracked output: global identities that match the ground truth.
    assert result.tracking.idf1 > 0.5
    # Bytes on the links, measured by the agents, next to the plan's prediction.
    assert {(l.from_, l.to) for l in result.links} >= {(l.from_, l.to) for l in dep.plan.links if l.kb_per_s > 1}
    # The agents' metrics reached the controller.
    assert set(controller.metrics()) == set(procs)
    # Replay learned the running plan from the deployment's routes: no --plan needed for $/h.
    from jellybean.cli.replay import running_plan

    announced = running_plan(data)
    assert announced is not None and announced.cost.total == pytest.approx(dep.plan.cost.total)
    assert build_result(data, scene, announced, evaluate=False).plan_cost_per_hour == pytest.approx(dep.plan.cost.total)


def test_killing_an_agent_mid_stream_replans_and_the_stream_goes_on(running, scene):
    dep, url, procs, controller = running
    victim = "hub"
    assert victim in procs
    killed_at = []

    def kill_later():
        time.sleep(4.0)
        killed_at.append(time.time())
        os.kill(procs[victim].pid, signal.SIGKILL)

    threading.Thread(target=kill_later, daemon=True).start()
    data = BrokerReplay(url, speed=1.0, drain_s=20).run(scene)
    result = build_result(data, scene, dep.plan)
    assert killed_at, "the agent was not killed"
    kill = killed_at[0]
    replanned = [e for e in controller.events if "re-planned without hub" in e.what]
    assert replanned, [e.what for e in controller.events]
    replan_s = replanned[0].at - kill
    assert "hub" not in {w.location for w in controller.current.plan.workers}

    delivered = data.sink.snapshot()
    published = {(s, f) for s, fs in data.published.items() for f in fs}
    after = [k for k in published if data.sink.items.get(k) and delivered[k].capture_ts > kill + replan_s + 2.0]
    after_ok = [k for k in after if not delivered[k].dropped]
    lost = sorted(published - set(delivered))
    dropped = [k for k, d in delivered.items() if d.dropped]
    delayed = [k for k, d in delivered.items() if not d.dropped and d.latency_ms > 1000]
    dup = sum(c.duplicates for c in result.cameras.values())
    print(f"\nkilled {victim} at +4 s; re-planned {replan_s:.2f} s later; frames published {len(published)}, "
          f"delivered {sum(c.frames_out for c in result.cameras.values())}, dropped {len(dropped)}, "
          f"never arrived {len(lost)}, delayed > 1 s {len(delayed)}, duplicates discarded {dup}; why dropped: "
          f"{Counter(delivered[k].dropped for k in dropped)}")
    assert replan_s < 10.0
    # The stream continues on the others: frames captured after the re-plan come out.
    assert after and len(after_ok) >= 0.9 * len(after)
    # Nothing is counted twice: every published frame is delivered, dropped or lost exactly once.
    for cam, counts in result.cameras.items():
        assert counts.frames_out + counts.dropped == counts.frames_in
    assert sum(c.frames_in for c in result.cameras.values()) == len(published)


def test_the_pipeline_runs_under_tls_passwords_and_the_generated_acl(tmp_path, scene):
    """The README's multi-machine path, on one machine: broker config from the plan, every
    party with its own credentials; the ACL lets the pipeline through."""
    from jellybean.agents.broker import free_port, grants_from_plan, write_broker_config

    inputs = load_inputs(EXAMPLE / "workflow.yaml", EXAMPLE / "zoo.yaml", EXAMPLE / "infrastructure.yaml")
    plan = make_plan(build_problem(inputs), "optimal", time_limit=20, inputs=inputs.paths)
    dep = Deployment(plan=plan, inputs=inputs, zoo_dir=EXAMPLE)
    cfg = write_broker_config(tmp_path / "broker", agents=grants_from_plan(plan, inputs.infrastructure,
                                                                         workflow=inputs.workflow, zoo=inputs.zoo),
                              port=free_port())
    broker = MosquittoBroker(cfg.conf, workdir=tmp_path / "broker-run", executable=find_mosquitto()).start()
    broker.wait_ready()
    procs = spawn_agents(dep, {site: cfg.url_for(site) for site in ("crossing", "hub", "cloud")}, tmp_path,
                         ca=cfg.ca)
    controller = None
    try:
        controller = start_controller(dep, cfg.url_for("controller"), cfg.ca, 60.0, 5000.0, quiet=True)
        data = BrokerReplay(cfg.url_for("replay"), ca=cfg.ca, speed=2.0, limit_s=3.0, drain_s=15).run(scene)
        result = build_result(data, scene, dep.plan)
        out = sum(c.frames_out for c in result.cameras.values())
        total = sum(c.frames_in for c in result.cameras.values())
        print(f"\nTLS + ACL: frames in {total}, out {out}, links "
              f"{[(l.from_, l.to, l.bytes) for l in result.links]}")
        assert total >= 4 * 30 and out >= 0.95 * total
        # The replay user could read the agents' metrics: link bytes measured by the agents.
        assert any(l.from_ == "hub" and l.to == "cloud" and l.bytes > 0 for l in result.links)
    finally:
        if controller is not None:
            controller.stop()
        stop_processes(procs.values())
        broker.stop()


def test_one_agent_per_planned_worker_shares_out_the_sites_tasks(tmp_path, scene):
    """`up --agent-per-worker`: an agent process per worker the plan puts at a site (SITE-1, ...),
    each with its share of the site's tasks, and every frame still ends exactly once."""
    inputs = load_inputs(EXAMPLE / "workflow.yaml", EXAMPLE / "zoo.yaml", EXAMPLE / "infrastructure.yaml")
    plan = make_plan(build_problem(inputs), "optimal", time_limit=20, inputs=inputs.paths)
    dep = Deployment(plan=plan, inputs=inputs, zoo_dir=EXAMPLE)
    per_site: Counter = Counter()
    for w in plan.workers:
        per_site[w.location] += w.count
    broker = MosquittoBroker(None, None, workdir=tmp_path / "broker", executable=find_mosquitto()).start()
    broker.wait_ready()
    procs = spawn_agents(dep, broker.url, tmp_path, per_worker=True)
    controller = None
    try:
        assert sorted(procs) == sorted(f"{site}-{k}" for site, n in per_site.items() for k in range(1, n + 1))
        controller = start_controller(dep, broker.url, None, 60.0, 5000.0, quiet=True, expect=tuple(procs))
        watch = threading.Thread(target=controller.run, daemon=True)
        watch.start()
        served = {name for names in controller.site_agents.values() for name in names}
        assert served == set(procs)
        data = BrokerReplay(broker.url, speed=2.0, limit_s=6, preload=True).run(scene)  # frames encoded beforehand
        result = build_result(data, scene, plan, evaluate=False)
        t = result.totals()
        assert t.frames_in > 0 and t.lost == 0 and t.frames_in == t.frames_out + t.dropped
        assert t.frames_out >= 0.9 * t.frames_in
        # Every agent ran its share: each one's metrics show items processed.
        busy = {name for name, m in data.agent_metrics.items() if any(o.items_out > 0 for o in m.operators)}
        assert busy == set(procs), (busy, sorted(procs))
    finally:
        if controller is not None:
            controller.stop()
        stop_processes(procs.values())
        broker.stop()
