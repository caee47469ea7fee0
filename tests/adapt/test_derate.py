"""The adapter's capacity correction: a site that serves less than its profile while backlogged
is planned at what it serves, and relaxes back to the profile while it keeps up."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from one_box import write_one_box

from jellybean.adapt.derate import FLOOR, Derating, Service, services
from jellybean.adapt.runtime import AdaptOptions, Adapter
from jellybean.agents.deployment import Deployment
from jellybean.agents.messages import OperatorMetrics
from jellybean.errors import JellyBeanError
from jellybean.planner.build import build_problem, load_inputs
from jellybean.planner.strategies import make_plan


def test_a_backlogged_site_is_planned_at_what_it_served_and_relaxes_back_while_it_keeps_up():
    d = Derating(relax_s=10.0)
    d.observe([Service("box", "detect", served_per_s=120.0, planned=200.0, queue=300.0, arrived_per_s=160.0)],
              now=0.0)
    assert d.factor("box", "detect") == pytest.approx(0.6)
    assert "detect at box x0.60" in d.describe() and "120.0 of 200.0" in d.describe()
    assert d.factor("box", "track") == 1.0 and d.factor("hub", "detect") == 1.0
    # Keeping up (a short queue) at a third of the capacity: no evidence either way, so the factor
    # relaxes towards the profile with the time constant.
    d.observe([Service("box", "detect", served_per_s=60.0, planned=200.0, queue=3.0, arrived_per_s=60.0)], now=10.0)
    assert d.factor("box", "detect") == pytest.approx(1 - 0.4 * math.exp(-1.0))
    # ... and never stays below what it served while keeping up.
    d.observe([Service("box", "detect", served_per_s=190.0, planned=200.0, queue=3.0, arrived_per_s=190.0)],
              now=10.5)
    assert d.factor("box", "detect") == pytest.approx(0.95)
    # A stalled report is not a box that serves nothing.
    d.observe([Service("box", "detect", served_per_s=0.0, planned=200.0, queue=50.0, arrived_per_s=0.0)], now=11.0)
    assert d.factor("box", "detect") == FLOOR
    # Nothing planned there, or a non-finite figure: not evidence.
    d.observe([Service("box", "detect", served_per_s=float("nan"), planned=200.0, queue=50.0, arrived_per_s=9.0),
               Service("box", "detect", served_per_s=10.0, planned=0.0, queue=50.0, arrived_per_s=9.0)], now=12.0)
    assert d.factor("box", "detect") == FLOOR
    assert not Service("box", "detect", 100.0, 200.0, queue=20.0, arrived_per_s=100.0).saturated  # 0.2 s of service
    assert Service("box", "detect", 100.0, 200.0, queue=21.0, arrived_per_s=100.0).saturated
    # A queue it served down within the interval is a hiccup, unless it holds more than a second.
    assert not Service("box", "detect", 100.0, 200.0, queue=60.0, arrived_per_s=95.0).saturated
    assert Service("box", "detect", 100.0, 200.0, queue=101.0, arrived_per_s=95.0).saturated
    with pytest.raises(JellyBeanError, match="relaxation time"):
        Derating(relax_s=float("inf"))


def _deployment(root: Path) -> Deployment:
    """One box that runs `det-w100` (200 frames/s) or `det-w050-s4` (500 frames/s), profiled by
    hand; a tracker on a second device."""
    zoo = write_one_box(root, "derate", [
        {"name": "det-w100", "model": "detector_w100.onnx", "accuracy": 0.9, "memory_mb": 300,
         "profiles": {"box": {"latency_ms": 5}}},
        {"name": "det-w050-s4", "model": "detector_w050.onnx", "accuracy": 0.4, "memory_mb": 200,
         "params": {"stride": 4}, "profiles": {"box": {"latency_ms": 2}}}],
        track_accuracy=1.0, accuracy=0.9)
    inputs = load_inputs(root / "workflow.yaml", zoo / "manifest.yaml", root / "infrastructure.yaml")
    plan = make_plan(build_problem(inputs), "optimal", time_limit=20, inputs=inputs.paths)
    return Deployment(plan=plan, inputs=inputs, zoo_dir=zoo)


def _detect(served: float, messages: float, queue: int, arrived: float | None = None) -> OperatorMetrics:
    return OperatorMetrics(operator="detect", variant="det-w100", served_per_s=served, items_per_s=messages,
                           queue_depth=queue, arrivals_per_s=served if arrived is None else arrived)


def test_the_adapter_scales_accuracy_down_when_the_box_serves_less_than_its_profile(tmp_path):
    dep = _deployment(tmp_path)
    assert dep.plan.variants["detect"] == "det-w100"
    adapter = Adapter(dep, AdaptOptions(period_s=1.0, tau_s=5.0, rise_tau_s=0.01, elastic=False))
    rate = {op: adapter.rp.base_rate[op] * 4.0 for op in adapter.fed}   # 160 frames/s

    def decide(now: float) -> str:
        adapter.step(rate, now=now, measured_at=now)
        return adapter.decisions[-1][1].variants()["detect"]

    # On the profile, det-w100 serves 160 frames/s at 90 % of its 200.
    assert decide(0.0) == "det-w100"
    # The box served 120 frames/s with a backlog: det-w100 cannot keep up, the strided one can.
    site = dep.plan.workers[0].location
    adapter.observe(dep.plan, {site: [_detect(120.0, 120.0, queue=300, arrived=160.0)]}, now=0.5)
    assert adapter.policy.rp.capacity[next(k for k in adapter.policy.rp.capacity if k[1:] == ("detect", "det-w100"))] \
        == pytest.approx(120.0)
    assert decide(1.0) == "det-w050-s4"
    # Keeping up for many relaxation times: back to the profile, and to the accurate variant.
    for k in range(1, 12):
        adapter.observe(dep.plan, {site: [_detect(100.0, 100.0, queue=2)]}, now=0.5 + 60.0 * k)
    assert adapter.derating.factor(site, "detect") > 0.99
    assert decide(800.0) == "det-w100"


def test_a_sites_reports_are_summed_and_queues_counted_in_the_plans_items(tmp_path):
    dep = _deployment(tmp_path)
    site = dep.plan.workers[0].location
    planned = sum(w.capacity for w in dep.plan.workers if w.operator == "detect")
    # Two agents at the site; a message carries 3 of the plan's items on average.
    got = services(dep.plan, {site: [_detect(90.0, 30.0, queue=4, arrived=100.0), _detect(60.0, 20.0, queue=6)],
                              "elsewhere": [_detect(50.0, 50.0, queue=0)]})
    assert got == [Service(site, "detect", 150.0, planned, 30.0, 160.0)]
