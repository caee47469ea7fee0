"""The adapt policy on small hand-made problems: the base plan, fixed hardware and what the
accuracy phase may buy."""

from __future__ import annotations

import pytest

from jellybean.adapt.model import RuntimeProblem, Slot
from jellybean.adapt.policy import Policy

BOX = Slot("box", "box", 0.05, (("box", 1),), False)


def _problem(*slots: Slot, capacity: dict, base: float = 50.0, target: float = 0.9) -> RuntimeProblem:
    return RuntimeProblem(
        operators=("detect",), variants={"detect": ("big", "small")}, paths=(("big",), ("small",)),
        accuracy={("big",): 0.9, ("small",): 0.5}, rank={("detect", "big"): 0.9, ("detect", "small"): 0.5},
        capacity=capacity, base_rate={"detect": base}, slots=slots, target=target, floor=0.3)


def test_a_plan_that_fills_its_workers_is_a_base_on_fixed_hardware():
    # The planner fills a worker to its capacity; the policy's 90 % headroom is for later loads.
    rp = _problem(BOX, capacity={("box", "detect", "big"): 100.0, ("box", "detect", "small"): 200.0}, base=100.0)
    policy = Policy(rp, "hardware", elastic=False, utilisation=0.9)
    assert policy.base.workers == {("box", "detect", "big"): 1}
    assert policy.base_variants == {"detect": "big"}


def test_fixed_hardware_keeps_its_workers_through_a_lull():
    cloud = Slot("cloud", "vm", 1.0, (("cloud", 4),), True)
    rp = _problem(cloud, capacity={("cloud", "detect", "big"): 100.0}, base=150.0)
    policy = Policy(rp, "hardware", elastic=False, running={"cloud": 2}, startup_s=60.0)
    low = policy.decide({"detect": 50.0}, now=1.0)
    assert sum(low.workers.values()) == 1 and low.served == pytest.approx(1.0)
    # Owned workers are not stopped in the lull, so the next burst has them at once.
    high = policy.decide({"detect": 170.0}, now=2.0)
    assert sum(high.workers.values()) == 2 and high.served == pytest.approx(1.0)
    assert policy.fleet.usable(2.0) == {"cloud": 2} and not high.booting


def test_the_accuracy_phase_buys_elastic_workers_to_serve_not_for_accuracy():
    cloud = Slot("cloud", "vm", 1.0, (("cloud", 10),), True)
    # The cloud runs only the small variant: above 90/s nothing meets the 0.9 target, so the
    # accuracy phase decides.
    rp = _problem(BOX, cloud, capacity={("box", "detect", "big"): 100.0, ("box", "detect", "small"): 200.0,
                                        ("cloud", "detect", "small"): 200.0})
    policy = Policy(rp, "loki", startup_s=60.0, running={"cloud": 0}, time_limit=5.0)
    # The box serves 150/s on the small variant: no cloud worker is needed to serve them, so
    # none boots, although one would raise accuracy (the box on the big variant, 60/s to the cloud).
    decision = policy.decide({"detect": 150.0}, now=1.0)
    assert decision.served == pytest.approx(1.0, abs=1e-5)
    assert not policy.fleet.pending() and not decision.booting
    assert all(slot == "box" for slot, _, _ in decision.workers)
    # At 400/s the box cannot serve them: cloud workers boot, as many as serving needs.
    policy.decide({"detect": 400.0}, now=2.0)
    booting = policy.fleet.pending().get("cloud", 0)
    assert booting == 2   # (400 - 180) / 180 rounds up to 2
