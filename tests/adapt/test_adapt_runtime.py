"""The pieces `deploy --adapt` decides with: the demand estimate, the accuracy phase's order of
goals, the controller-side Adapter (one decision per fresh measurement, plans on the plan's
sites) and the deadline each operator's queue keeps."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from jellybean.adapt.demand import Ewma
from jellybean.adapt.model import RuntimeProblem, Slot, solve
from jellybean.adapt.runtime import AdaptOptions, Adapter
from jellybean.agents.deployment import Deployment, build_assignments, reserves
from jellybean.errors import JellyBeanError
from jellybean.planner.build import build_problem, load_inputs
from jellybean.planner.strategies import make_plan

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "aicity"


def test_demand_rises_are_followed_fast_and_falls_slowly():
    ewma = Ewma(tau_s=5.0, rise_tau_s=0.5)
    ewma.observe("load", 1.0, 0.0)
    up = ewma.observe("load", 2.0, 1.0)
    assert up == pytest.approx(1.0 + (1 - math.exp(-2.0)))      # 1 s is two rise time constants
    down = ewma.observe("load", 1.0, 2.0)
    assert down == pytest.approx(up - (up - 1.0) * (1 - math.exp(-0.2)))
    assert down > 1.7
    assert ewma.observe("load", float("nan"), 3.0) == down           # a bad figure is not demand
    with pytest.raises(JellyBeanError, match="rise time constant"):
        Ewma(5.0, 0.0)


def _one_detector(floor: float | None = 0.3) -> RuntimeProblem:
    """One worker that runs either variant: `big` (0.9, 100/s) or `small` (0.5, 200/s)."""
    return RuntimeProblem(
        operators=("detect",), variants={"detect": ("big", "small")}, paths=(("big",), ("small",)),
        accuracy={("big",): 0.9, ("small",): 0.5}, rank={("detect", "big"): 0.9, ("detect", "small"): 0.5},
        capacity={("box", "detect", "big"): 100.0, ("box", "detect", "small"): 200.0},
        base_rate={"detect": 50.0}, slots=(Slot("box", "box", 0.05, (("box", 1),), False),),
        target=0.9, floor=floor)


@pytest.mark.parametrize("demand", [101.0, 150.0, 199.0])
def test_the_accuracy_phase_serves_every_item_before_it_buys_accuracy(demand):
    # The more accurate variant would leave (demand - 100) items a second unserved; serving them
    # comes first, however small a share they are.
    got = solve(_one_detector(), {"detect": demand}, "accuracy", {"box": 1})
    assert got is not None
    assert got.served == pytest.approx(1.0, abs=1e-5)
    assert got.workers == {("box", "detect", "small"): 1}


def test_the_accuracy_phase_takes_the_accurate_variant_when_it_serves_as_many():
    got = solve(_one_detector(), {"detect": 90.0}, "accuracy", {"box": 1})
    assert got.workers == {("box", "detect", "big"): 1} and got.accuracy == pytest.approx(0.9)
    # Beyond what any variant serves: as many items as possible (the cheap variant), a partial share.
    over = solve(_one_detector(), {"detect": 400.0}, "accuracy", {"box": 1})
    assert over.workers == {("box", "detect", "small"): 1} and over.served == pytest.approx(0.5, abs=1e-5)


@pytest.fixture(scope="module")
def deployment() -> Deployment:
    inputs = load_inputs(EXAMPLE / "workflow.yaml", EXAMPLE / "zoo.yaml", EXAMPLE / "infrastructure.yaml")
    plan = make_plan(build_problem(inputs), "optimal", time_limit=20, inputs=inputs.paths)
    return Deployment(plan=plan, inputs=inputs, zoo_dir=EXAMPLE)


def _planned(adapter: Adapter, multiplier: float) -> dict[str, float]:
    return {op: adapter.rp.base_rate[op] * multiplier for op in adapter.fed}


def test_the_adapter_folds_each_measurement_in_once(deployment):
    adapter = Adapter(deployment, AdaptOptions(period_s=1.0, tau_s=5.0, rise_tau_s=1.0, elastic=False))
    adapter.step(_planned(adapter, 1.0), now=0.0, measured_at=100.0)
    assert adapter.demand.get("load") == pytest.approx(1.0)
    # The same report seen again a period later is not a second sample of a doubled load.
    adapter.step(_planned(adapter, 2.0), now=1.0, measured_at=100.0)
    assert adapter.demand.get("load") == pytest.approx(1.0)
    assert len(adapter.history) == 1
    adapter.step(_planned(adapter, 2.0), now=2.0, measured_at=101.0)
    assert adapter.demand.get("load") > 1.5
    assert len(adapter.history) == 2


def test_a_fresh_measurement_is_decided_on_within_half_a_period(deployment):
    adapter = Adapter(deployment, AdaptOptions(period_s=2.0, elastic=False))
    adapter.step(_planned(adapter, 1.0), now=0.0, measured_at=10.0)
    assert len(adapter.decisions) == 1
    adapter.step(_planned(adapter, 1.0), now=0.5, measured_at=10.5)    # too soon: not even half a period
    assert len(adapter.decisions) == 1
    adapter.step(_planned(adapter, 1.0), now=1.2, measured_at=11.0)    # fresh, past half a period
    assert len(adapter.decisions) == 2
    adapter.step(_planned(adapter, 1.0), now=2.3, measured_at=11.0)    # stale: waits the whole period
    assert len(adapter.decisions) == 2
    adapter.step(_planned(adapter, 1.0), now=3.3, measured_at=11.0)
    assert len(adapter.decisions) == 3


def test_each_operator_keeps_the_time_what_follows_it_needs(deployment):
    plan, inputs = deployment.plan, deployment.inputs
    down = {o.name: [] for o in inputs.workflow.operators}
    for o in inputs.workflow.operators:
        for i in o.inputs:
            if i in down:
                down[i].append(o.name)
    reserve = reserves(plan, down)
    sinks = [op for op, d in down.items() if not d]
    assert sinks and all(reserve[op] == 0.0 for op in sinks)
    service = {}
    for w in plan.workers:
        if w.count > 0:
            service[w.operator] = max(service.get(w.operator, 0.0), w.latency_ms)
    for op, children in down.items():
        for c in children:
            # At least a hop, the child's own service time and what the child keeps.
            assert reserve[op] >= 20.0 + service[c] + reserve[c] - 1e-9
    assignments = build_assignments(deployment, {s: [s] for s in {w.location for w in plan.workers}}, 1,
                                    deadline_ms=2000.0)
    a = next(iter(assignments.values()))
    first = max(reserve, key=reserve.get)
    assert reserve[first] > 0
    assert a.deadline_for(first) == pytest.approx(2000.0 - reserve[first])
    assert a.deadline_for(sinks[0]) == pytest.approx(2000.0)
    none = build_assignments(deployment, {s: [s] for s in {w.location for w in plan.workers}}, 1)
    assert next(iter(none.values())).deadline_for(first) is None


def test_the_controller_and_the_simulator_decide_on_the_same_beat():
    from jellybean.adapt.runtime import Cadence

    # Reports every second, a 5 s period: a fresh report is decided on once half a period has
    # passed since the last decision; without reports, once a period.
    cadence = Cadence(5.0)
    fresh = [t for t in range(1, 15) if cadence.due(float(t), True)]
    assert fresh == [1, 4, 7, 10, 13]
    stale = Cadence(5.0)
    assert [t for t in range(0, 16) if stale.due(float(t), False)] == [0, 5, 10, 15]
