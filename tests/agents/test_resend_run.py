"""Re-sent requests at run time (equal-resource replication): a re-ID replica stalls, the detector's
agent sends what it does not hear back about again, the other replica serves the copies, and every
frame still ends at the sink exactly once.

Real Mosquitto, one agent process per device (2 re-ID replicas at the hub), the shipped models
(examples/aicity-parm without its parity workers), a synthetic scene; the stall is SIGSTOP of one
re-ID agent, then SIGCONT."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from jellybean.agents.broker import find_mosquitto
from jellybean.agents.deployment import Deployment, build_assignments
from jellybean.errors import JellyBeanError
from jellybean.planner.build import build_problem, check_references, load_inputs
from jellybean.planner.strategies import make_plan
from jellybean.replay.cityflow import open_dataset
from jellybean.replay.scene import SceneConfig, write_scene
from reid_faults import run_with_reid_fault

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "aicity-parm"
pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="needs Mosquitto (make test installs it)")


def _deployment(root: Path, resend: dict, on: str = "reid") -> Deployment:
    """examples/aicity-parm with `resend` on `on` instead of parity, on the hub's first 2 mini-PCs."""
    wf = yaml.safe_load((EXAMPLE / "workflow.yaml").read_text())
    for op in wf["operators"]:
        op.pop("redundancy", None)
        if op["name"] == on:
            op["resend"] = resend
    zoo_path = (EXAMPLE / "zoo.yaml").resolve()
    zoo = yaml.safe_load(zoo_path.read_text())
    for op in zoo["operators"]:
        if op["name"] == "reid":
            op["variants"] = [v for v in op["variants"] if v["name"] == "reid-w100"]
        for v in op["variants"]:
            if v.get("model"):
                v["model"] = str((zoo_path.parent / v["model"]).resolve())
            v.pop("parity", None)
    infra = yaml.safe_load((EXAMPLE / "infrastructure.yaml").read_text())
    infra["hardware_catalog"] = [str((EXAMPLE / c).resolve()) for c in infra["hardware_catalog"]]
    for site in infra["sites"]:
        if site["name"] == "hub":
            site["hardware"] = {"hub-x86-minipc": 2}
    for name, doc in (("workflow", wf), ("zoo", zoo), ("infrastructure", infra)):
        (root / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    inputs = load_inputs(root / "workflow.yaml", root / "zoo.yaml", root / "infrastructure.yaml")
    check_references(inputs)
    plan = make_plan(build_problem(inputs), "optimal", time_limit=20, inputs=inputs.paths)
    return Deployment(plan=plan, inputs=inputs, zoo_dir=root)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("scene")
    write_scene(root, SceneConfig(cameras=4, seconds=6, seed=11))
    return open_dataset(root).scenarios[0]


def test_the_assignment_carries_resend_and_a_stateful_operator_refuses_it(tmp_path):
    dep = _deployment(tmp_path, {"after_ms": 80, "times": 2})
    a = next(iter(build_assignments(dep, {"hub": ["hub"], "crossing": ["crossing"], "cloud": ["cloud"]}, 1).values()))
    assert {op: (r.after_ms, r.times) for op, r in a.resend.items()} == {"reid": (80.0, 2)}
    stateful = _deployment(tmp_path, {"after_ms": 80}, on="track")
    with pytest.raises(JellyBeanError, match=r"operators\[2\]\.resend: 'track' keeps state per stream"):
        build_assignments(stateful, {"hub": ["hub"], "crossing": ["crossing"], "cloud": ["cloud"]}, 1)


def test_a_stalled_reid_replica_is_covered_by_re_sent_items_and_nothing_is_lost_or_doubled(tmp_path, scene):
    dep = _deployment(tmp_path, {"after_ms": 150, "times": 2})

    def stall(stalled) -> None:
        time.sleep(1.5)   # the fault's schedule: mid-replay, not a wait for a condition
        os.kill(stalled.pid, signal.SIGSTOP)
        time.sleep(1.5)
        os.kill(stalled.pid, signal.SIGCONT)

    run = run_with_reid_fault(dep, scene, tmp_path, stall)
    data, result = run.data, run.result
    published = {(s, f) for s, fs in data.published.items() for f in fs}
    delivered = data.sink.snapshot()
    t = result.totals()
    resent = [k for k, d in delivered.items() if "reid" in d.resent]
    why = Counter(d.dropped for d in delivered.values() if d.dropped)
    print(f"\nresend: published {len(published)}, delivered {t.frames_out}, dropped {t.dropped} {dict(why)}, "
          f"lost {t.lost}, duplicates at the sink {t.duplicates}, re-ID outputs from re-sent items {len(resent)}")
    assert t.lost == 0 and set(delivered) == published
    assert t.frames_in == t.frames_out + t.dropped == len(published)
    assert t.duplicates == 0
    # The stall held the items the broker gave that replica for 1.5 s; copies sent after 150 ms
    # went round to the other one, whose outputs came first.
    assert resent, "no re-ID output came from a re-sent item during the stall"
    # A frame whose copies all met the stalled replica can reach the tracker (or association) after
    # it stopped waiting for it (1 s): dropped, with that reason. Most were served in time from a copy.
    assert all(w.startswith("out of order at ") for w in why) and sum(why.values()) < len(resent), why
