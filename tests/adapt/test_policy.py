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


def _strided(box_workers: int) -> RuntimeProblem:
    """detect (full, or strided: half the crops on to reid) -> reid, on one box of identical workers."""
    box = Slot("box", "box", 0.05, (("box", box_workers),), False)
    return RuntimeProblem(
        operators=("detect", "reid"), variants={"detect": ("full", "s2"), "reid": ("r",)},
        paths=(("full", "r"), ("s2", "r")), accuracy={("full", "r"): 0.9, ("s2", "r"): 0.6},
        rank={("detect", "full"): 0.9, ("detect", "s2"): 0.6, ("reid", "r"): 0.9},
        capacity={("box", "detect", "full"): 50.0, ("box", "detect", "s2"): 100.0, ("box", "reid", "r"): 150.0},
        base_rate={"detect": 100.0, "reid": 400.0}, slots=(box,), target=0.5, floor=0.3,
        scale={("detect", "s2"): 0.5}, upstream={"detect": (), "reid": ("detect",)})


def test_what_follows_a_strided_variant_is_sized_for_its_share_of_the_items():
    rp = _strided(box_workers=4)
    # At the target 0.5 the strided path is the cheapest: 1 detector worker and 2 re-ID workers for
    # its 200 crops/s (3 would be needed for 400), where the full path needs 2 + 3.
    policy = Policy(rp, "loki", elastic=False, utilisation=1.0)
    assert policy.base.paths == {("s2", "r"): pytest.approx(1.0)}
    assert policy.base.workers == {("box", "detect", "s2"): 1, ("box", "reid", "r"): 2}
    decision = policy.decide({"detect": 100.0, "reid": 400.0}, now=1.0)
    # Routing sends re-ID the crops the strided detector passes on, not the full 400/s.
    assert sum(load for (_, op, _), load in decision.loads.items() if op == "reid") == pytest.approx(200.0)
    assert decision.served == pytest.approx(1.0)


def test_a_mix_of_strided_and_full_scales_each_path_on_its_own():
    rp = _strided(box_workers=4)
    # Target 0.75: half the frames on each detector (0.5 * 0.9 + 0.5 * 0.6). Crops: 200/s from the
    # full half, 100/s from the strided half: 2 re-ID workers, and 1 + 1 detector workers: 4 in all,
    # where the full path alone needs 2 + 3 (and so would the mix, were the crops not scaled).
    rp = RuntimeProblem(**{**rp.__dict__, "target": 0.75})
    policy = Policy(rp, "loki", elastic=False, utilisation=1.0)
    shares = {p[0]: q for p, q in policy.base.paths.items()}
    assert shares == {"full": pytest.approx(0.5), "s2": pytest.approx(0.5)}
    assert policy.base.workers == {("box", "detect", "full"): 1, ("box", "detect", "s2"): 1, ("box", "reid", "r"): 2}
    assert rp.reach("reid", ("s2", "r")) == 0.5 and rp.reach("reid", ("full", "r")) == 1.0
    assert rp.reach_of_shares("reid", {"detect": {"full": 0.5, "s2": 0.5}}) == pytest.approx(0.75)
