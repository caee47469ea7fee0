"""Parity workers at run time (ParM): a re-ID worker stalls and then dies, the tracker's decoder
rebuilds what it holds from the parity outputs, and every frame still ends at the sink exactly once.

Real Mosquitto, one agent process per device (2 re-ID workers and 1 parity worker at the hub), the
shipped models (examples/aicity-parm), a synthetic scene; the stall is SIGSTOP of one re-ID agent,
then SIGCONT."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from jellybean.agents.broker import find_mosquitto
from jellybean.agents.deployment import Deployment
from jellybean.planner.build import build_problem, check_references, load_inputs
from jellybean.planner.strategies import make_plan
from jellybean.replay.cityflow import open_dataset
from jellybean.replay.scene import SceneConfig, write_scene
from reid_faults import run_with_reid_fault

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "aicity-parm"
pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="needs Mosquitto (make test installs it)")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("scene")
    write_scene(root, SceneConfig(cameras=4, seconds=6, seed=11))
    return open_dataset(root).scenarios[0]


def test_a_stalled_then_killed_reid_worker_is_covered_by_parity_and_nothing_is_lost(tmp_path, scene):
    inputs = load_inputs(EXAMPLE / "workflow.yaml", EXAMPLE / "zoo.yaml", EXAMPLE / "infrastructure.yaml")
    check_references(inputs)
    plan = make_plan(build_problem(inputs), "optimal", time_limit=20, inputs=inputs.paths)
    dep = Deployment(plan=plan, inputs=inputs, zoo_dir=(EXAMPLE / "zoo.yaml").resolve().parent)
    where = {w.operator: (w.location, w.count) for w in plan.workers}
    assert where["reid"] == ("hub", 2) and where["reid.parity"] == ("hub", 1), where

    def stall_then_kill(stalled) -> None:
        time.sleep(1.5)   # the faults' schedule: mid-replay, not a wait for a condition
        os.kill(stalled.pid, signal.SIGSTOP)
        time.sleep(1.2)
        os.kill(stalled.pid, signal.SIGCONT)
        time.sleep(1.0)
        os.kill(stalled.pid, signal.SIGKILL)

    run = run_with_reid_fault(dep, scene, tmp_path, stall_then_kill)
    data, result, reid_agents, events = run.data, run.result, run.reid_agents, run.events
    published = {(s, f) for s, fs in data.published.items() for f in fs}
    delivered = data.sink.snapshot()
    t = result.totals()
    rebuilt = [k for k, d in delivered.items() if "reid" in d.reconstructed]
    why = Counter(d.dropped for d in delivered.values() if d.dropped)
    print(f"\nparity: published {len(published)}, delivered {t.frames_out}, dropped {t.dropped} {dict(why)}, "
          f"lost {t.lost}, duplicates at the sink {t.duplicates}, re-ID outputs rebuilt {len(rebuilt)} "
          f"({len(rebuilt) / max(1, len(published)):.1%} of frames)")
    assert t.lost == 0 and set(delivered) == published
    assert t.frames_in == t.frames_out + t.dropped == len(published)
    assert t.duplicates == 0
    # The stall held re-ID items for 1.2 s, and the kill what the agent had: the decoder rebuilt
    # some of them from parity outputs.
    assert rebuilt, "no re-ID output was rebuilt during the stall or after the kill"
    # The dead agent's share of the hub went to the agents still there, and what its session held
    # was sent on to them (the site itself was never lost, so there was no re-plan).
    assert any(f"agent(s) {reid_agents[0]} gone" in e for e in events), events
    assert any(f"took over {reid_agents[0]}'s session" in e for e in events), events
    # While both re-ID agents ran, the detector's agent sent each item to one of them in turn, so
    # every coding group had its members on different workers (a stalled or dead one holds at most
    # one member of a group, which the parity output can rebuild).
    seen = [[run.addressed.get(m) for m in g] for g in run.groups]
    spread = [a for a in seen if len(a) == 2 and None not in a]
    print(f"parity queries {len(seen)}, with both members sent to a re-ID agent's own topic {len(spread)}")
    assert len(spread) >= len(seen) // 2, (len(spread), len(seen))
    assert all(a[0] != a[1] for a in spread), [a for a in spread if a[0] == a[1]][:5]
    # (after the kill, the site's re-ID workers are spread over the two agents left, the parity one too)
    assert set(reid_agents) <= set(run.addressed.values())
